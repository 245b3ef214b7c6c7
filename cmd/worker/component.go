package main

import (
	"context"
	"errors"
	"fmt"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// A component is one running part of the worker: the HTTP server, the dashboard's event
// feed, the outbox, the consumer, a health check. startWorker starts each as soon as
// what it uses is open, on a context of its own; close stops them in reverse order, the
// last started first, each within its own timeout, and then closes what they used (see
// keep). A new part is one line in startWorker:
//
//	w.start(base, component{name: "notifier", run: notifier.Run, timeout: 10 * time.Second})
type component struct {
	name string
	// run does the work until its context is cancelled (or stop is called), then returns.
	// A return while the worker is not stopping is a failure: it goes to the worker's
	// failed channel.
	run func(ctx context.Context) error
	// stop, if set, is called at shutdown before run's context is cancelled, with a
	// context that ends after timeout: the outbox flushes, the HTTP server shuts down. Its
	// error is part of close's.
	stop func(ctx context.Context) error
	// timeout bounds stop, then the wait for run to return.
	timeout time.Duration

	cancel context.CancelFunc
	done   chan struct{} // closed when run has returned
}

// start runs c on a context of its own, derived from ctx, until close stops it.
func (w *worker) start(ctx context.Context, c component) {
	ctx, c.cancel = context.WithCancel(ctx)
	c.done = make(chan struct{})
	w.components = append(w.components, &c)
	go func() {
		defer close(c.done)
		w.report(c.name, c.run(ctx))
	}()
}

// shutdown stops c: stop, if set, then its context, then it waits up to c.timeout for
// run to return. A component that does not return in time is a hang: the stacks of every
// goroutine go to log, so that the log names what it waits for.
func (c *component) shutdown(log zerolog.Logger) error {
	var errs []error
	if c.stop != nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		errs = append(errs, c.stop(ctx))
		cancel()
	}
	c.cancel()
	select {
	case <-c.done:
	case <-time.After(c.timeout):
		errs = append(errs, fmt.Errorf("%s did not stop within %s", c.name, c.timeout))
		log.Error().Str("component", c.name).Str("goroutines", goroutines()).
			Msgf("%s did not stop within %s; the stacks of every goroutine follow", c.name, c.timeout)
	}
	return errors.Join(errs...)
}

// goroutines returns the stacks of every goroutine, as a panic prints them.
func goroutines() string {
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	return b.String()
}

// report passes the error of a component that stopped while the worker was not shutting
// down to failed; a clean return at shutdown is not news.
func (w *worker) report(component string, err error) {
	if w.ready.stopping.Load() {
		if err != nil && !errors.Is(err, context.Canceled) {
			w.log.Warn().Err(err).Str("component", component).Msg("component stopped with an error")
		}
		return
	}
	if err == nil {
		err = errors.New("stopped unexpectedly")
	}
	select {
	case w.failed <- fmt.Errorf("%s: %w", component, err):
	default:
	}
}

// A resource is what the components use: the state, the NATS connection, the embedded
// server, a repository. close closes it once every component has stopped.
type resource struct {
	name  string
	close func() error
}

// keep has close close the resource name after every component has stopped; resources
// close in reverse order too, the last kept first.
func (w *worker) keep(name string, close func() error) {
	w.resources = append(w.resources, resource{name: name, close: close})
}

// close stops the worker, once: the components in reverse order (the health checks, then
// the consumer, which lets running jobs finish, ..., the outbox after a last flush, the
// HTTP server), then the resources in reverse order (the repositories, NATS, the state).
// A worker that failed to start is closed as far as it got.
func (w *worker) close() error {
	w.closeOnce.Do(func() {
		w.ready.stopping.Store(true)
		var errs []error
		for _, c := range slices.Backward(w.components) {
			errs = append(errs, c.shutdown(w.log))
		}
		for _, r := range slices.Backward(w.resources) {
			if err := r.close(); err != nil {
				errs = append(errs, fmt.Errorf("close %s: %w", r.name, err))
			}
		}
		w.closeErr = errors.Join(errs...)
	})
	return w.closeErr
}
