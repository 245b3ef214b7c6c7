package testkit

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// JetStreamReport describes, for a test that found jobs not moving, every stream of js
// (messages, its Raft group: leader and replicas, current or how far behind) and every
// consumer of the streams (pending, waiting for an ack, redelivered, pull requests
// waiting, its leader). It asks each with a timeout of its own and reports what did not
// answer instead of failing: a cluster that just lost a node may not answer at all.
func JetStreamReport(ctx context.Context, js jetstream.JetStream) string {
	var b strings.Builder
	ask := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 5*time.Second) }
	lctx, cancel := ask()
	defer cancel()
	names := js.StreamNames(lctx)
	var streams []string
	for name := range names.Name() {
		streams = append(streams, name)
	}
	if err := names.Err(); err != nil {
		fmt.Fprintf(&b, "list streams: %v\n", err)
	}
	for _, name := range streams {
		sctx, cancel := ask()
		s, err := js.Stream(sctx, name)
		if err != nil {
			cancel()
			fmt.Fprintf(&b, "stream %s: %v\n", name, err)
			continue
		}
		info, err := s.Info(sctx)
		if err != nil {
			cancel()
			fmt.Fprintf(&b, "stream %s: info: %v\n", name, err)
			continue
		}
		fmt.Fprintf(&b, "stream %s: msgs %d, seq %d-%d, %s\n", name, info.State.Msgs, info.State.FirstSeq, info.State.LastSeq, raftGroup(info.Cluster))
		cons := s.ListConsumers(sctx)
		for ci := range cons.Info() {
			fmt.Fprintf(&b, "  consumer %s: pending %d, ack pending %d, redelivered %d, waiting pulls %d, delivered %d, ack floor %d, %s\n",
				ci.Name, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.NumWaiting,
				ci.Delivered.Stream, ci.AckFloor.Stream, raftGroup(ci.Cluster))
		}
		if err := cons.Err(); err != nil {
			fmt.Fprintf(&b, "  list consumers: %v\n", err)
		}
		cancel()
	}
	return b.String()
}

// raftGroup describes a stream's or consumer's Raft group.
func raftGroup(c *jetstream.ClusterInfo) string {
	if c == nil {
		return "no cluster info"
	}
	var peers []string
	for _, p := range c.Replicas {
		state := "current"
		if !p.Current {
			state = fmt.Sprintf("behind by %d", p.Lag)
		}
		if p.Offline {
			state = "offline"
		}
		peers = append(peers, fmt.Sprintf("%s %s (seen %s ago)", p.Name, state, p.Active.Round(time.Millisecond)))
	}
	leader := c.Leader
	if leader == "" {
		leader = "NONE"
	}
	return fmt.Sprintf("leader %s, replicas [%s]", leader, strings.Join(peers, "; "))
}
