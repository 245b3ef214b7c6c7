package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// OutboxMsg is a message to publish to NATS later, with its own Nats-Msg-Id, so that
// publishing it twice (after a crash between publish and ack) is harmless.
type OutboxMsg struct {
	Subject string
	MsgID   string
	Data    []byte
}

// OutboxItem is an OutboxMsg waiting in the outbox; Seq orders items and acks them.
type OutboxItem struct {
	Seq uint64
	OutboxMsg
}

// Enqueue adds out to the outbox in one transaction, shared with concurrent writers.
func (db *DB) Enqueue(out ...OutboxMsg) error {
	msgs, err := encodeOutbox(out)
	if err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	if err := db.update(true, func(tx *bbolt.Tx) error { return appendOutbox(tx, msgs) }); err != nil {
		return fmt.Errorf("enqueue %d messages: %w", len(msgs), err)
	}
	return nil
}

// Outbox returns up to max items (max <= 0: all), oldest first.
func (db *DB) Outbox(max int) ([]OutboxItem, error) { return db.OutboxAfter(0, max) }

// OutboxAfter returns up to max items (max <= 0: all) with a sequence number above
// after, oldest first. Sequence numbers start at 1 (bbolt's NextSequence).
func (db *DB) OutboxAfter(after uint64, max int) ([]OutboxItem, error) {
	var items []OutboxItem
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, v := c.Seek(u64(after + 1)); k != nil && (max <= 0 || len(items) < max); k, v = c.Next() {
			if len(k) != 8 {
				continue
			}
			m, err := decodeOutboxMsg(v)
			if err != nil {
				return fmt.Errorf("decode outbox item %d: %w", u64be(k), err)
			}
			items = append(items, OutboxItem{Seq: u64be(k), OutboxMsg: m})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	return items, nil
}

// ackSoonDelay bounds how long a published item waits to be removed when no other
// write comes to carry its removal (AckOutboxSoon).
const ackSoonDelay = 100 * time.Millisecond

// AckOutboxSoon removes published items with the next commit of another write, or on
// their own within ackSoonDelay when none comes, instead of in a commit (an fsync) of
// their own: at a steady rate of small jobs, that was one of the two commits each job
// cost. Until then they stay in the outbox: the publisher reads on past them
// (OutboxAfter), and a process that dies first publishes them again when it starts,
// which the streams drop as duplicates by their Nats-Msg-Id, as for a death between
// the publish and AckOutbox. A removal that fails is tried again with the next commit.
func (db *DB) AckOutboxSoon(seqs ...uint64) {
	if len(seqs) == 0 {
		return
	}
	db.ackMu.Lock()
	defer db.ackMu.Unlock()
	first := len(db.acks) == 0 // else the timer runs already, for earlier ones
	db.acks = append(db.acks, seqs...)
	switch {
	case !first:
	case db.ackTimer == nil:
		db.ackTimer = time.AfterFunc(ackSoonDelay, func() { _ = db.FlushOutboxAcks() })
	default:
		db.ackTimer.Reset(ackSoonDelay)
	}
}

// FlushOutboxAcks removes the items AckOutboxSoon was given now.
func (db *DB) FlushOutboxAcks() error {
	db.ackMu.Lock()
	seqs := db.acks
	db.acks = nil
	db.ackMu.Unlock()
	if err := db.AckOutbox(seqs...); err != nil {
		db.requeueAcks(seqs)
		return err
	}
	return nil
}

// takeAcks returns a write that removes the items AckOutboxSoon was given, for the
// commit loop to add to the transaction it is about to make; nil when there are none.
func (db *DB) takeAcks() *commitReq {
	db.ackMu.Lock()
	seqs := db.acks
	db.acks = nil
	db.ackMu.Unlock()
	if len(seqs) == 0 {
		return nil
	}
	return &commitReq{fn: deleteOutbox(seqs), after: func(err error) {
		if err != nil {
			db.requeueAcks(seqs)
		}
	}}
}

// requeueAcks gives back removals that failed, for the next commit (or Close).
func (db *DB) requeueAcks(seqs []uint64) {
	db.ackMu.Lock()
	db.acks = append(db.acks, seqs...)
	db.ackMu.Unlock()
}

func deleteOutbox(seqs []uint64) func(*bbolt.Tx) error {
	return func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		for _, s := range seqs {
			if err := b.Delete(u64(s)); err != nil {
				return err
			}
		}
		return nil
	}
}

// AckOutbox removes published items; unknown sequence numbers are ignored.
func (db *DB) AckOutbox(seqs ...uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	if err := db.update(false, deleteOutbox(seqs)); err != nil {
		return fmt.Errorf("ack %d outbox items: %w", len(seqs), err)
	}
	return nil
}

// OutboxLen returns how many items wait in the outbox.
func (db *DB) OutboxLen() (int, error) {
	var n int
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		n = tx.Bucket(bucketOutbox).Stats().KeyN
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count outbox: %w", err)
	}
	return n, nil
}

func u64be(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

// encodeOutbox encodes each message as: uvarint len + subject, uvarint len + msg id, data.
func encodeOutbox(out []OutboxMsg) ([][]byte, error) {
	msgs := make([][]byte, 0, len(out))
	for _, m := range out {
		if m.Subject == "" {
			return nil, errors.New("outbox message has no subject")
		}
		b := make([]byte, 0, 2*binary.MaxVarintLen64+len(m.Subject)+len(m.MsgID)+len(m.Data))
		b = binary.AppendUvarint(b, uint64(len(m.Subject)))
		b = append(b, m.Subject...)
		b = binary.AppendUvarint(b, uint64(len(m.MsgID)))
		b = append(b, m.MsgID...)
		b = append(b, m.Data...)
		msgs = append(msgs, b)
	}
	return msgs, nil
}

func decodeOutboxMsg(b []byte) (OutboxMsg, error) {
	var m OutboxMsg
	s, b, err := readString(b)
	if err != nil {
		return m, fmt.Errorf("subject: %w", err)
	}
	id, b, err := readString(b)
	if err != nil {
		return m, fmt.Errorf("msg id: %w", err)
	}
	m.Subject, m.MsgID, m.Data = s, id, append([]byte(nil), b...)
	return m, nil
}

func readString(b []byte) (string, []byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return "", nil, errors.New("truncated")
	}
	return string(b[k : k+int(n)]), b[k+int(n):], nil
}

func appendOutbox(tx *bbolt.Tx, msgs [][]byte) error {
	if len(msgs) == 0 {
		return nil
	}
	b := tx.Bucket(bucketOutbox)
	for _, m := range msgs {
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		if err := b.Put(u64(seq), m); err != nil {
			return err
		}
	}
	return nil
}
