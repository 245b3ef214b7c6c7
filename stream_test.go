package brr_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
)

// lyingWorker answers dump requests on pool "default" with a stream of two chunks whose
// last headers are made by edit: a worker gone wrong, or a message changed on the way.
func lyingWorker(t *testing.T, nc *nats.Conn, edit func(seq int64, h nats.Header)) {
	t.Helper()
	body := [][]byte{bytes.Repeat([]byte("a"), 1000), []byte("the end")}
	all := bytes.Join(body, nil)
	sum := sha256.Sum256(all)
	sub, err := nc.Subscribe("brr.api.default.dump", func(m *nats.Msg) {
		info, _ := json.Marshal(brr.DumpInfo{Format: "file", Size: int64(len(all))})
		data, _ := json.Marshal(brr.StreamOpened{V: brr.Version, Subject: "brr.api.default.stream.x", Info: info})
		_ = m.Respond(data)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	chunks, err := nc.Subscribe("brr.api.default.stream.x", func(m *nats.Msg) {
		var req brr.StreamNext
		_ = json.Unmarshal(m.Data, &req)
		if req.Stop || req.Seq < 1 || req.Seq > 2 {
			return
		}
		reply := nats.NewMsg(m.Reply)
		reply.Data = body[req.Seq-1]
		reply.Header.Set(brr.HeaderVersion, "1")
		reply.Header.Set(brr.HeaderSeq, strconv.FormatInt(req.Seq, 10))
		if req.Seq == 2 {
			reply.Header.Set(brr.HeaderEOF, "1")
			reply.Header.Set(brr.HeaderSize, strconv.Itoa(len(all)))
			reply.Header.Set(brr.HeaderSHA256, hex.EncodeToString(sum[:]))
		}
		edit(req.Seq, reply.Header)
		_ = m.RespondMsg(reply)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = chunks.Unsubscribe() })
	if err := nc.Flush(); err != nil { // the server has both subscriptions before a client asks
		t.Fatal(err)
	}
}

// TestDumpChecksTheStream reads a dump from workers that lie about it: each lie is an
// error, never a short or wrong file that looks complete.
func TestDumpChecksTheStream(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(seq int64, h nats.Header)
		says string
	}{
		{"honest", func(int64, nats.Header) {}, ""},
		{"wrong hash", func(seq int64, h nats.Header) {
			if seq == 2 {
				h.Set(brr.HeaderSHA256, strings.Repeat("0", 64))
			}
		}, "stream is damaged"},
		{"bytes missing", func(seq int64, h nats.Header) {
			if seq == 2 {
				h.Set(brr.HeaderSize, "5000")
			}
		}, "stream is incomplete"},
		{"chunk out of order", func(seq int64, h nats.Header) { h.Set(brr.HeaderSeq, "7") }, "asked for chunk 1, got \"7\""},
		{"other version", func(seq int64, h nats.Header) { h.Set(brr.HeaderVersion, "2") }, "version"},
		{"error", func(seq int64, h nats.Header) {
			if seq == 2 {
				h.Set(brr.HeaderError, "no /x in the snapshot")
				h.Set(brr.HeaderCode, brr.CodeNotFound)
			}
		}, "no /x in the snapshot"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := natstest.Start(t)
			worker := ns.Connect(t)
			lyingWorker(t, worker, c.edit)
			nc := ns.Connect(t)
			client, err := brr.NewClient(nc)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var got bytes.Buffer
			_, err = client.Dump(ctx, brr.DumpRequest{Snapshot: "latest", Path: "/x"}, func(brr.DumpInfo) (io.Writer, error) { return &got, nil })
			if c.says == "" {
				if err != nil || got.Len() != 1007 {
					t.Fatalf("dump: %v, %d bytes", err, got.Len())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("dump: %v; want an error saying %q", err, c.says)
			}
			if c.name == "error" && !errors.Is(err, brr.ErrNotFound) {
				t.Errorf("the worker's not_found error is %v, not ErrNotFound", err)
			}
		})
	}
}
