package state

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

func TestOutboxOrderAndAck(t *testing.T) {
	db := open(t)
	for i := 0; i < 10; i++ {
		if err := db.Enqueue(OutboxMsg{Subject: fmt.Sprintf("brr.events.health.worker.%d", i), MsgID: fmt.Sprint("m", i), Data: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	items, err := db.Outbox(4)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 4 {
		t.Fatalf("Outbox(4) = %d items", len(items))
	}
	for i, it := range items {
		if want := fmt.Sprint("m", i); it.MsgID != want || !bytes.Equal(it.Data, []byte{byte(i)}) || it.Subject != fmt.Sprintf("brr.events.health.worker.%d", i) {
			t.Fatalf("item %d = %+v, want msg id %s", i, it, want)
		}
		if i > 0 && it.Seq <= items[i-1].Seq {
			t.Fatalf("sequence numbers not increasing: %d after %d", it.Seq, items[i-1].Seq)
		}
	}
	if err := db.AckOutbox(items[0].Seq, items[1].Seq, items[3].Seq, 999999); err != nil {
		t.Fatal(err)
	}
	if n, err := db.OutboxLen(); err != nil || n != 7 {
		t.Fatalf("OutboxLen after acking 3 = %d, %v; want 7", n, err)
	}
	db = reopen(t, db)
	items, err = db.Outbox(0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, it := range items {
		ids = append(ids, it.MsgID)
	}
	if got, want := fmt.Sprint(ids), "[m2 m4 m5 m6 m7 m8 m9]"; got != want {
		t.Fatalf("Outbox after ack and reopen = %s, want %s", got, want)
	}
	// New items come after the old ones, also after a reopen.
	if err := db.Enqueue(OutboxMsg{Subject: "s", MsgID: "m10"}); err != nil {
		t.Fatal(err)
	}
	items, _ = db.Outbox(0)
	if last := items[len(items)-1]; last.MsgID != "m10" {
		t.Fatalf("last item = %s, want m10", last.MsgID)
	}
}

func TestNotify(t *testing.T) {
	db := open(t)
	select {
	case <-db.Notify():
		t.Fatal("Notify signalled before any commit")
	default:
	}
	// A job record without outbox messages does not wake the publisher.
	if err := db.PutJob(record("job-1", t0, "started")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-db.Notify():
		t.Fatal("Notify signalled for a commit without outbox items")
	default:
	}
	// Several commits coalesce into one signal, which is there when the call returns.
	for i := 0; i < 3; i++ {
		if err := db.Enqueue(OutboxMsg{Subject: "s", MsgID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-db.Notify():
	default:
		t.Fatal("no signal after Enqueue")
	}
	select {
	case <-db.Notify():
		t.Fatal("signals did not coalesce")
	default:
	}
	if err := db.PutJob(record("job-2", t0, "succeeded"), OutboxMsg{Subject: "s", MsgID: "x"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-db.Notify():
	case <-time.After(10 * time.Second):
		t.Fatal("no signal after PutJob with an outbox message")
	}
}

func FuzzDecodeOutboxMsg(f *testing.F) {
	msgs, _ := encodeOutbox([]OutboxMsg{{Subject: "a.b", MsgID: "id", Data: []byte("data")}})
	f.Add(msgs[0])
	f.Add([]byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeOutboxMsg(b)
		if err != nil || m.Subject == "" {
			return
		}
		enc, err := encodeOutbox([]OutboxMsg{m})
		if err != nil {
			t.Fatal(err)
		}
		m2, err := decodeOutboxMsg(enc[0])
		if err != nil || m2.Subject != m.Subject || m2.MsgID != m.MsgID || !bytes.Equal(m2.Data, m.Data) {
			t.Fatalf("round trip of %+v = %+v, %v", m, m2, err)
		}
	})
}

// TestOutboxAckSoon: published items handed to AckOutboxSoon are removed by the next
// commit of another write, with it (no commit of their own), or on their own within
// ackSoonDelay when none comes, or by Close; OutboxAfter reads on past them meanwhile.
func TestOutboxAckSoon(t *testing.T) {
	db := open(t)
	enqueue := func(ids ...string) []OutboxItem {
		t.Helper()
		for _, id := range ids {
			if err := db.Enqueue(OutboxMsg{Subject: "brr.events.x", MsgID: id}); err != nil {
				t.Fatal(err)
			}
		}
		items, err := db.Outbox(0)
		if err != nil {
			t.Fatal(err)
		}
		return items
	}
	msgIDs := func(items []OutboxItem) string {
		var ids []string
		for _, it := range items {
			ids = append(ids, it.MsgID)
		}
		return fmt.Sprint(ids)
	}
	items := enqueue("a", "b", "c")
	after, err := db.OutboxAfter(items[0].Seq, 0)
	if err != nil || msgIDs(after) != "[b c]" {
		t.Fatalf("OutboxAfter(first) = %s, %v; want [b c]", msgIDs(after), err)
	}
	if after, _ := db.OutboxAfter(items[2].Seq, 0); len(after) != 0 {
		t.Fatalf("OutboxAfter(last) = %s, want none", msgIDs(after))
	}

	// Removed with the next write's commit (or by the timer, should that write take
	// longer than ackSoonDelay on a loaded machine: either way, gone once it returns).
	db.AckOutboxSoon(items[0].Seq, items[1].Seq)
	if err := db.PutJob(&JobRecord{ID: "j1", Status: "started"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Outbox(0); msgIDs(got) != "[c]" {
		t.Fatalf("outbox after a write that carried the removal = %s, want [c]", msgIDs(got))
	}

	// Removed on their own when no write comes.
	db.AckOutboxSoon(items[2].Seq)
	if !waitFor(10*time.Second, func() bool { n, _ := db.OutboxLen(); return n == 0 }) {
		t.Fatalf("a published item was not removed within %v with no write to carry it", 10*time.Second)
	}

	// Removed by Close.
	items = enqueue("d")
	db.AckOutboxSoon(items[0].Seq)
	db = reopen(t, db)
	if n, err := db.OutboxLen(); err != nil || n != 0 {
		t.Fatalf("outbox after Close holds %d items (%v), want 0", n, err)
	}
}

func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}
