package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/testkit"
)

// rolePasswords are the passwords of deploy/nats/accounts.conf's users in these tests,
// in the form the docs recommend (a letter first, then letters, digits and '_').
var rolePasswords = map[string]string{
	"worker":     "brr_w_4f1c9e0a7b2d",
	"publisher":  "brr_p_8a3d6e1f0c9b",
	"subscriber": "brr_s_2b7e4a9c1d0f",
	"admin":      "brr_a_6c0f3b8d2e1a",
}

// serverLog keeps what a nats-server logs, to find the permission violations it saw.
type serverLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *serverLog) add(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, v...))
}

func (l *serverLog) Noticef(format string, v ...any) { l.add(format, v...) }
func (l *serverLog) Warnf(format string, v ...any)   { l.add(format, v...) }
func (l *serverLog) Fatalf(format string, v ...any)  { l.add(format, v...) }
func (l *serverLog) Errorf(format string, v ...any)  { l.add(format, v...) }
func (l *serverLog) Debugf(format string, v ...any)  { l.add(format, v...) }
func (l *serverLog) Tracef(format string, v ...any)  { l.add(format, v...) }

// violations returns the permission violations of user logged so far, and forgets them.
func (l *serverLog) violations(user string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out, keep []string
	for _, line := range l.lines {
		// The server names a connection's user as "<account>/user:<name>".
		if strings.Contains(line, "Violation") && strings.Contains(line, "/user:"+user+`"`) {
			out = append(out, line)
			continue
		}
		keep = append(keep, line)
	}
	l.lines = keep
	return out
}

// deployServer is a nats-server started from a config file of deploy/nats.
type deployServer struct {
	*natstest.Server
	url string
	log *serverLog
}

// startDeployServer starts nats-server from deploy/nats/<file> with the role passwords
// (and vars) in its environment, as an operator would, but on a free loopback port,
// without the monitoring port, and with its store in a temporary directory.
func startDeployServer(t *testing.T, file string, vars map[string]string) *deployServer {
	t.Helper()
	for user, pw := range rolePasswords {
		t.Setenv("BRR_"+strings.ToUpper(user)+"_PASSWORD", pw)
	}
	for k, v := range vars {
		t.Setenv(k, v)
	}
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("load %s: %v", file, err)
	}
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.HTTPPort = 0
	opts.StoreDir = t.TempDir()
	opts.NoSigs = true
	log := &serverLog{}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("new server from %s: %v", file, err)
	}
	ns.SetLogger(log, false, false)
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		t.Fatalf("nats-server from %s not ready after 10s", file)
	}
	s := &deployServer{Server: &natstest.Server{Server: ns, Opts: opts}, url: ns.ClientURL(), log: log}
	t.Cleanup(s.Stop)
	return s
}

// connectAs connects to s as user with its password and its inbox prefix, _INBOX_<user>,
// as apps do (opts add to or override them). NATS reports a permission violation
// asynchronously, apart from the call that caused it (which waits for its timeout); the
// returned channel gets each.
func connectAs(t *testing.T, s *deployServer, user string, opts ...nats.Option) (*nats.Conn, <-chan error) {
	t.Helper()
	violations := make(chan error, 16)
	opts = append([]nats.Option{nats.UserInfo(user, rolePasswords[user]), nats.CustomInboxPrefix(brr.InboxPrefix(user)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				select {
				case violations <- err:
				default:
				}
			}
		})}, opts...)
	nc, err := nats.Connect(s.url, opts...)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc, violations
}

// refusals checks that what a role must not do is refused: the call fails, and the
// server logged a permission violation of that user on the subject (or one that starts
// with it).
type refusals struct {
	t          *testing.T
	s          *deployServer
	user       string
	violations <-chan error // of the user's connection, from connectAs
}

func (r refusals) check(what, subject string, try func(ctx context.Context) error) {
	r.t.Helper()
	for len(r.violations) > 0 {
		<-r.violations
	}
	// The call ends at the violation, or after 10s when there is none.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		select {
		case <-r.violations:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := try(ctx)
	// The server sends the client its error before it logs the violation: wait for it.
	var v []string
	testkit.WaitFor(10*time.Second, func() bool {
		v = append(v, r.s.log.violations(r.user)...)
		return strings.Contains(strings.Join(v, "\n"), `Subject "`+subject)
	})
	if err == nil || !strings.Contains(strings.Join(v, "\n"), `Subject "`+subject) {
		r.t.Errorf("%s %s: err = %v, server logged %q; want an error and a violation on %s", r.user, what, err, v, subject)
	}
}

// noViolations fails the test when the server logged a permission violation of user.
func (s *deployServer) noViolations(t *testing.T, user, doing string) {
	t.Helper()
	if v := s.log.violations(user); len(v) > 0 {
		t.Errorf("%s hit permission violations while %s:\n%s", user, doing, strings.Join(v, "\n"))
	}
}

// request sends a raw request; the JetStream API calls that the client has no method for.
func request(nc *nats.Conn, subject, body string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		_, err := nc.RequestWithContext(ctx, subject, []byte(body))
		return err
	}
}

// TestRolePermissions runs a worker and the roles of deploy/nats/accounts.conf against a
// server started from deploy/nats/single.conf: each role does its job without a single
// permission violation, and is refused what it must not do.
func TestRolePermissions(t *testing.T) {
	s := startDeployServer(t, "../../deploy/nats/single.conf", nil)
	w := bins.StartWorker(t, testkit.WorkerOptions{
		NATS:   s.url,
		Config: "nats: {user: worker}\njobs: {drain_timeout: 5s}\n",
		Env:    []string{"BRR_NATS_PASSWORD=" + rolePasswords["worker"]},
	})
	ctx := testkit.Context(t, 2*time.Minute)

	// The publisher backs up, restores and follows jobs, events and results with the CLI.
	src := t.TempDir()
	testkit.WriteTree(t, src, testkit.Tree{Seed: 7, Sizes: []int{200 << 10, 3000, 0, 10}})
	cli := func(user string, args ...string) (string, string, int) {
		t.Helper()
		env := []string{"BRR_NATS_URL=" + s.url, "BRR_NATS_PASSWORD=" + rolePasswords[user]}
		return bins.RunCLI(t, env, append([]string{"--user", user, "--timeout", "60s"}, args...)...)
	}
	if out, errOut, code := cli("publisher", "backup", src, "--wait", "--id", "auth-backup-1"); code != 0 {
		t.Fatalf("publisher: brr backup --wait exited %d: %s%s", code, out, errOut)
	}
	for _, args := range [][]string{
		{"jobs", "show", "auth-backup-1"},
		{"jobs", "show", "auth-backup-1", "--wait"},
		{"jobs", "ls"},
		{"events"},
		{"events", "--kind", "snapshot"},
		{"snapshots"},
		{"checkpoints"},
		{"workers"},
		{"restore", "latest", filepath.Join(t.TempDir(), "restore"), "--source", src, "--wait"},
		{"cancel", "auth-never-published"},
		{"ls", "latest", "--recursive"}, {"find", "*"}, {"diff", "latest", "latest"}, {"dump", "latest", "/"},
		{"repo", "ls"}, {"repo", "ls", "--json"},
	} {
		if out, errOut, code := cli("publisher", args...); code != 0 {
			t.Errorf("publisher: brr %s exited %d: %s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	pnc, pviolations := connectAs(t, s, "publisher")
	pc, err := brr.NewClient(pnc)
	if err != nil {
		t.Fatal(err)
	}
	waitWorkers(t, ctx, pc, 1)
	s.noViolations(t, "publisher", "publishing and following jobs")
	s.noViolations(t, "worker", "running them")

	// What the publisher must not do.
	pjs, err := jetstream.New(pnc)
	if err != nil {
		t.Fatal(err)
	}
	refused := refusals{t: t, s: s, user: "publisher", violations: pviolations}
	refused.check("creates a consumer on the jobs", "$JS.API.CONSUMER.CREATE.BRR_JOBS.thief", func(ctx context.Context) error {
		_, err := pjs.CreateOrUpdateConsumer(ctx, "BRR_JOBS", jetstream.ConsumerConfig{Durable: "thief", AckPolicy: jetstream.AckExplicitPolicy})
		return err
	})
	refused.check("pulls from the workers' consumer", "$JS.API.CONSUMER.MSG.NEXT.BRR_JOBS.workers-default",
		request(pnc, "$JS.API.CONSUMER.MSG.NEXT.BRR_JOBS.workers-default", `{"batch":1}`))
	refused.check("listens to the jobs as they are published", "brr.jobs.>", func(ctx context.Context) error {
		sub, err := pnc.SubscribeSync("brr.jobs.>")
		if err != nil {
			return err
		}
		defer sub.Unsubscribe()
		_, err = sub.NextMsgWithContext(ctx)
		return err
	})
	refused.check("lists the dead letters", "$JS.API.CONSUMER.CREATE.BRR_DLQ.", func(ctx context.Context) error {
		_, err := pc.DeadLetters(ctx)
		return err
	})
	refused.check("gets a dead letter", "$JS.API.STREAM.MSG.GET.BRR_DLQ", request(pnc, "$JS.API.STREAM.MSG.GET.BRR_DLQ", `{"seq":1}`))
	refused.check("gets a dead letter directly", "$JS.API.DIRECT.GET.BRR_DLQ", request(pnc, "$JS.API.DIRECT.GET.BRR_DLQ", `{"seq":1}`))
	refused.check("listens to dead letters", "brr.dlq.>", func(ctx context.Context) error {
		sub, err := pnc.SubscribeSync("brr.dlq.>")
		if err != nil {
			return err
		}
		defer sub.Unsubscribe()
		_, err = sub.NextMsgWithContext(ctx)
		return err
	})
	refused.check("deletes the jobs stream", "$JS.API.STREAM.DELETE.BRR_JOBS", func(ctx context.Context) error {
		return pjs.DeleteStream(ctx, "BRR_JOBS")
	})
	refused.check("deletes the results bucket", "$JS.API.STREAM.DELETE.KV_BRR_RESULTS", func(ctx context.Context) error {
		return pjs.DeleteKeyValue(ctx, "BRR_RESULTS")
	})
	refused.check("purges the event stream", "$JS.API.STREAM.PURGE.BRR_EVENTS", request(pnc, "$JS.API.STREAM.PURGE.BRR_EVENTS", ""))
	refused.check("deletes an event", "$JS.API.STREAM.MSG.DELETE.BRR_EVENTS", request(pnc, "$JS.API.STREAM.MSG.DELETE.BRR_EVENTS", `{"seq":1}`))
	refused.check("forges an event", "brr.events.job.backup.succeeded", func(ctx context.Context) error {
		_, err := pjs.Publish(ctx, "brr.events.job.backup.succeeded", []byte(`{"v":1}`))
		return err
	})
	refused.check("forges a job result", "$KV.BRR_RESULTS.auth-backup-1", func(ctx context.Context) error {
		_, err := pjs.Publish(ctx, "$KV.BRR_RESULTS.auth-backup-1", []byte(`{"v":1}`))
		return err
	})
	refused.check("takes a lease", "$KV.BRR_LEASES.repo-local", func(ctx context.Context) error {
		_, err := pjs.Publish(ctx, "$KV.BRR_LEASES.repo-local", []byte("mine"))
		return err
	})
	refused.check("registers a repo", "$KV.BRR_REPOS.default.stolen", func(ctx context.Context) error {
		_, err := pjs.Publish(ctx, "$KV.BRR_REPOS.default.stolen", []byte(`{"repo":"stolen"}`))
		return err
	})
	refused.check("adds a schedule", "brr.schedules.nightly", func(ctx context.Context) error {
		_, err := pc.AddSchedule(ctx, "nightly", "0 0 3 * * *", "", brr.PingJob{})
		return err
	})
	refused.check("publishes a key job (an escrow key could go)", "brr.jobs.default.key", func(ctx context.Context) error {
		_, err := pc.Publish(ctx, brr.KeyJob{Action: brr.KeyList})
		return err
	})
	refused.check("updates the jobs stream", "$JS.API.STREAM.UPDATE.BRR_JOBS", func(ctx context.Context) error {
		_, err := pjs.UpdateStream(ctx, jetstream.StreamConfig{Name: "BRR_JOBS", Subjects: []string{"brr.jobs.>"}})
		return err
	})
	spyOnReplies(t, s, refused, pnc, ctx)

	// The subscriber reads events, by the CLI and by its own consumers, and nothing else.
	for _, args := range [][]string{{"events"}, {"events", "--kind", "snapshot", "--json"}, {"workers"}} {
		if out, errOut, code := cli("subscriber", args...); code != 0 || !strings.Contains(out, "snapshot.committed") && !strings.Contains(out, `"committed"`) && args[0] != "workers" {
			t.Errorf("subscriber: brr %s exited %d: %s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	snc, sviolations := connectAs(t, s, "subscriber")
	sc, err := brr.NewClient(snc)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *brr.Event, 64)
	if err := sc.Subscribe(ctx, "brr.events.job.>", func(e *brr.Event) { got <- e }, brr.DeliverAll()); err != nil {
		t.Fatalf("subscriber: subscribe: %v", err)
	}
	select {
	case e := <-got:
		if e.JobID == "" {
			t.Errorf("subscriber: first job event has no job id: %+v", e)
		}
	case <-ctx.Done():
		t.Fatal("subscriber: no job event")
	}
	waitWorkers(t, ctx, sc, 1)
	sjs, err := jetstream.New(snc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := sjs.CreateOrUpdateConsumer(ctx, "BRR_EVENTS", jetstream.ConsumerConfig{Durable: "dashboard", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("subscriber: durable consumer on the events: %v", err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatalf("subscriber: next event: %v", err)
	}
	if err := msg.DoubleAck(ctx); err != nil {
		t.Fatalf("subscriber: ack an event: %v", err)
	}
	s.noViolations(t, "subscriber", "reading events")

	refused = refusals{t: t, s: s, user: "subscriber", violations: sviolations}
	refused.check("publishes a job", "brr.jobs.default.ping", func(ctx context.Context) error {
		_, err := sc.Publish(ctx, brr.PingJob{})
		return err
	})
	refused.check("reads a job result", "$JS.API.STREAM.INFO.KV_BRR_RESULTS", func(ctx context.Context) error {
		_, err := sc.Job(ctx, "auth-backup-1")
		return err
	})
	refused.check("asks for snapshots", "brr.api.default.snapshots", func(ctx context.Context) error {
		_, err := sc.Snapshots(ctx, "", "")
		return err
	})
	refused.check("creates a consumer on the jobs", "$JS.API.CONSUMER.CREATE.BRR_JOBS.thief", func(ctx context.Context) error {
		_, err := sjs.CreateOrUpdateConsumer(ctx, "BRR_JOBS", jetstream.ConsumerConfig{Durable: "thief", AckPolicy: jetstream.AckExplicitPolicy})
		return err
	})
	refused.check("deletes the event stream", "$JS.API.STREAM.DELETE.BRR_EVENTS", func(ctx context.Context) error {
		return sjs.DeleteStream(ctx, "BRR_EVENTS")
	})
	refused.check("cancels a job", "$KV.BRR_CANCEL.auth-backup-1", func(ctx context.Context) error {
		_, err := sjs.Publish(ctx, "$KV.BRR_CANCEL.auth-backup-1", []byte(`{"v":1,"id":"auth-backup-1"}`))
		return err
	})
	// The CLI says so, at once, instead of waiting for the publish to time out.
	_, errOut, code := cli("subscriber", "backup", src)
	if code != 1 || !strings.Contains(errOut, `NATS refused this command: nats: permissions violation: Permissions Violation for Publish to "brr.jobs.default.backup"`) {
		t.Errorf("subscriber: brr backup exited %d, want 1 and the refusal:\n%s", code, errOut)
	}
	s.log.violations("subscriber")

	// Nothing of what was refused happened: the admin sees the streams and no consumer
	// but the workers', and the worker still runs jobs.
	anc, _ := connectAs(t, s, "admin")
	ajs, err := jetstream.New(anc)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"BRR_JOBS", "BRR_EVENTS", "BRR_DLQ", "KV_BRR_RESULTS", "KV_BRR_LEASES"} {
		if _, err := ajs.Stream(ctx, name); err != nil {
			t.Errorf("stream %s after the refused attempts: %v", name, err)
		}
	}
	jobs, err := ajs.Stream(ctx, "BRR_JOBS")
	if err != nil {
		t.Fatal(err)
	}
	for names := jobs.ConsumerNames(ctx); ; {
		name, ok := <-names.Name()
		if !ok {
			break
		}
		if name != "workers-default" {
			t.Errorf("consumer %q on BRR_JOBS: only the workers' may exist", name)
		}
	}
	ac, err := brr.NewClient(anc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ac.Schedules(ctx); err != nil {
		t.Errorf("admin: list schedules: %v", err)
	}
	if _, err := ac.DeadLetters(ctx); err != nil {
		t.Errorf("admin: list dead letters: %v", err)
	}
	res, err := pc.Publish(ctx, brr.PingJob{})
	if err != nil {
		t.Fatalf("publisher: publish ping: %v", err)
	}
	if _, err := pc.Wait(ctx, res.ID, nil); err != nil {
		t.Fatalf("ping after the refused attempts: %v\n%s", err, w.Logs())
	}
	s.noViolations(t, "admin", "reading dead letters and schedules")
	s.noViolations(t, "worker", "running jobs")
}

// spyOnReplies is the publisher trying to read the replies meant for the other users:
// it listens to every inbox but its own (the default _INBOX of clients without a prefix,
// the other users', everything) and forges a reply, and NATS refuses each; then the
// worker user (as the web API does), an admin without an inbox prefix and the subscriber
// ask and read what their replies carry (a snapshot listing, a stream's info), and
// nothing of it reaches the publisher.
func spyOnReplies(t *testing.T, s *deployServer, refused refusals, pnc *nats.Conn, ctx context.Context) {
	t.Helper()
	var spies []*nats.Subscription
	for _, inbox := range []string{"_INBOX.>", "_INBOX_subscriber.>", "_INBOX_worker.>", "_INBOX_admin.>", "*.>", ">"} {
		refused.check("listens to the replies on "+inbox, inbox, func(ctx context.Context) error {
			sub, err := pnc.SubscribeSync(inbox)
			if err != nil {
				return err
			}
			spies = append(spies, sub)
			m, err := sub.NextMsgWithContext(ctx)
			if err == nil {
				return fmt.Errorf("read a reply on %s: %s", m.Subject, m.Data)
			}
			return err
		})
	}
	refused.check("forges a reply to the worker", "_INBOX_worker.forged", func(ctx context.Context) error {
		if err := pnc.Publish("_INBOX_worker.forged", []byte(`{"v":1,"snapshots":[]}`)); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	})

	// The others ask, each on its own inbox, and get their answers.
	wnc, _ := connectAs(t, s, "worker")
	wc, err := brr.NewClient(wnc)
	if err != nil {
		t.Fatal(err)
	}
	if snaps, err := wc.Snapshots(ctx, "", ""); err != nil || len(snaps) == 0 {
		t.Errorf("worker user: list snapshots = %d, %v; want the backup's", len(snaps), err)
	}
	legacy, _ := connectAs(t, s, "admin", nats.CustomInboxPrefix("_INBOX")) // nats.go's default
	lc, err := brr.NewClient(legacy)
	if err != nil {
		t.Fatal(err)
	}
	if snaps, err := lc.Snapshots(ctx, "", ""); err != nil || len(snaps) == 0 {
		t.Errorf("admin with _INBOX: list snapshots = %d, %v; want the backup's", len(snaps), err)
	}
	if _, err := lc.Job(ctx, "auth-backup-1"); err != nil {
		t.Errorf("admin with _INBOX: read a job result: %v", err)
	}
	snc, _ := connectAs(t, s, "subscriber")
	sjs, err := jetstream.New(snc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sjs.Stream(ctx, "BRR_EVENTS"); err != nil {
		t.Errorf("subscriber: stream info of the events: %v", err)
	}
	for _, nc := range []*nats.Conn{wnc, legacy, snc, pnc} {
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	for _, sub := range spies {
		if m, err := sub.NextMsg(200 * time.Millisecond); err == nil {
			t.Errorf("publisher read a reply meant for another user on %s (listening on %s): %s", m.Subject, sub.Subject, m.Data)
		}
		_ = sub.Unsubscribe()
	}
	for _, user := range []string{"worker", "admin", "subscriber"} {
		s.noViolations(t, user, "asking while the publisher spied")
	}
}

// waitWorkers waits until c lists n workers (from their heartbeats on the event stream).
