package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	neturl "net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/brr-dev/brr"
)

// Exit statuses.
const (
	exitOK       = 0
	exitFailed   = 1 // the job failed, or the command could not do what it was asked
	exitUsage    = 2 // the command line is wrong
	exitNoServer = 3 // NATS cannot be reached, or no worker has set it up or serves the pool
	// exitInterrupted is the shell's 128+SIGINT: Ctrl-C (or SIGTERM) stopped the command,
	// which tells a script that a --wait was cut short from a job that failed.
	exitInterrupted = 130
)

const defaultURL = "nats://127.0.0.1:4222"

// Main runs the brr command line. Its fields are the process's outside world, so that
// tests run commands in-process.
type Main struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Getwd          func() (string, error)
	// Version is what --version prints; empty means the build's version.
	Version string

	// Set by the global flags.
	url, creds, user, password, token string
	inboxPrefix                       string
	tlsCA, tlsCert, tlsKey            string
	pool, prefix                      string
	json                              bool
	timeout                           time.Duration

	// capture, when set, makes job commands record their job in it instead of publishing
	// it, and every other command fail before it connects: `brr schedule add` runs the
	// job command of a schedule this way.
	capture *capturedJob
}

// exitError carries an exit status; quiet means its message was already printed.
type exitError struct {
	code  int
	err   error
	quiet bool
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageError(err error) error { return &exitError{code: exitUsage, err: err} }

// Run runs the command line args and returns the exit status.
func (m *Main) Run(ctx context.Context, args []string) int {
	root := m.newRoot()
	root.SetArgs(args)
	root.SetOut(m.Stdout)
	root.SetErr(m.Stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code := exitFailed
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		code = ee.code
		if ee.quiet {
			return code
		}
	case errors.Is(err, brr.ErrInvalid), errors.Is(err, brr.ErrUnknownKind):
		code = exitUsage
	case errors.Is(err, brr.ErrNoStream), errors.Is(err, brr.ErrNoWorker), errors.Is(err, brr.ErrNotConnected):
		code = exitNoServer
	}
	if ctx.Err() != nil && code == exitFailed {
		code = exitInterrupted // whatever the command was doing, it was stopped
	}
	if m.json || jsonFlag(args) {
		// Scripts read one JSON object: stdout carries results, stderr this.
		data, _ := json.Marshal(struct {
			Error string `json:"error"`
			Exit  int    `json:"exit"`
		}{err.Error(), code})
		fmt.Fprintf(m.Stderr, "%s\n", data)
		return code
	}
	// Every error not printed already (quiet) is printed here, once, with the one "brr: "
	// prefix: messages, flag and argument errors included, do not start with "brr" themselves.
	fmt.Fprintf(m.Stderr, "brr: %v\n", err)
	if code == exitUsage && !errors.Is(err, brr.ErrInvalid) {
		fmt.Fprintln(m.Stderr, "Run 'brr --help' or 'brr COMMAND --help' for usage.")
	}
	return code
}

// jsonFlag reports whether args ask for --json, for an error met before the flags were
// parsed (an unknown flag, a bad value).
func jsonFlag(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--json" || a == "--json=true" || a == "--json=1" {
			return true
		}
	}
	return false
}

func (m *Main) env(name, def string) string {
	if v := m.Getenv(name); v != "" {
		return v
	}
	return def
}

func (m *Main) newRoot() *cobra.Command {
	v := m.Version
	if v == "" {
		v = version
	}
	root := &cobra.Command{
		Use:   "brr",
		Short: "Back up, restore and verify through brr workers on NATS JetStream",
		Long: `brr publishes backup, restore and verify jobs to the brr workers over NATS,
waits for their results, and shows jobs, snapshots, dead letters and events.

Every command talks to NATS at --nats (env BRR_NATS_URL, default ` + defaultURL + `);
start a worker there with: brr-worker`,
		Example: `  brr backup /srv/app --wait
  brr snapshots --repo local
  brr restore latest /tmp/restore --source /srv/app --wait
  brr events --follow`,
		Version:       v,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError(fmt.Errorf("unknown command %q%s", args[0], didYouMean(cmd, args[0])))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			_ = cmd.Help()
			return &exitError{code: exitUsage, err: errors.New("no command"), quiet: true}
		},
	}
	// Declared here rather than by cobra so that it has no -v shorthand.
	root.Flags().Bool("version", false, "print the version and exit")
	root.SetVersionTemplate("brr {{.Version}}\n")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		if name := subcommand(cmd); name != "" {
			err = fmt.Errorf("%s: %w", name, err)
		}
		return usageError(err)
	})
	f := root.PersistentFlags()
	f.StringVar(&m.url, "nats", m.env("BRR_NATS_URL", defaultURL), "NATS server URL(s), comma-separated (env BRR_NATS_URL)")
	f.StringVar(&m.creds, "creds", m.Getenv("BRR_NATS_CREDS"), "NATS credentials file (env BRR_NATS_CREDS)")
	f.StringVar(&m.user, "user", m.Getenv("BRR_NATS_USER"), "NATS user (env BRR_NATS_USER)")
	f.StringVar(&m.password, "password", m.Getenv("BRR_NATS_PASSWORD"), "NATS password (env BRR_NATS_PASSWORD)")
	f.StringVar(&m.token, "token", m.Getenv("BRR_NATS_TOKEN"), "NATS token (env BRR_NATS_TOKEN)")
	f.StringVar(&m.inboxPrefix, "inbox-prefix", m.Getenv("BRR_NATS_INBOX_PREFIX"), "prefix of the NATS inboxes that replies come to, as the user's permissions allow (env BRR_NATS_INBOX_PREFIX; default _INBOX_<user> for a --user, _INBOX otherwise: set it with --creds)")
	f.StringVar(&m.tlsCA, "tls-ca", "", "CA certificate file to verify the NATS server")
	f.StringVar(&m.tlsCert, "tls-cert", "", "client certificate file for NATS")
	f.StringVar(&m.tlsKey, "tls-key", "", "client key file for NATS")
	f.StringVar(&m.pool, "pool", brr.DefaultPool, "worker pool to send jobs to and ask")
	f.StringVar(&m.prefix, "prefix", brr.DefaultPrefix, "subject prefix the workers use")
	f.BoolVar(&m.json, "json", false, "print one JSON object per line, for scripts")
	f.DurationVar(&m.timeout, "timeout", 0, "give up after this long, e.g. 30s or 2h (default: no limit)")
	// Values from the environment are secrets: keep them out of --help.
	for _, name := range []string{"password", "token"} {
		f.Lookup(name).DefValue = ""
	}

	root.AddCommand(m.backupCmd(), m.restoreCmd(), m.verifyCmd(), m.snapshotsCmd(), m.jobsCmd(),
		m.dlqCmd(), m.eventsCmd(), m.benchCmd())
	root.AddCommand(m.replicateCmd())
	root.AddCommand(m.checkpointCmd(), m.checkpointsCmd(), m.pruneCmd(), m.drillCmd())
	root.AddCommand(m.scheduleCmd())
	root.AddCommand(m.workersCmd())
	root.AddCommand(m.repoCmd())
	root.AddCommand(m.sourcesCmd())
	root.AddCommand(m.keyCmd())
	root.AddCommand(m.cancelCmd())
	root.AddCommand(m.lsCmd(), m.findCmd(), m.diffCmd(), m.dumpCmd())
	m.completions(root) // after every AddCommand: it walks the tree
	return root
}

// args checks the number of positional arguments as a usage error.
func args(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || len(args) > max {
			want := fmt.Sprintf("%d arguments", min)
			switch {
			case max != min:
				want = fmt.Sprintf("%d to %d arguments", min, max)
			case min == 0:
				want = "no arguments"
			case min == 1:
				want = "1 argument"
			}
			if max == 0 && cmd.HasAvailableSubCommands() {
				var names []string
				for _, sub := range cmd.Commands() {
					if sub.IsAvailableCommand() {
						names = append(names, sub.Name())
					}
				}
				return usageError(fmt.Errorf("unknown command %q for %s (its commands: %s)%s", args[0], cmd.CommandPath(), strings.Join(names, ", "), didYouMean(cmd, args[0])))
			}
			return usageError(fmt.Errorf("%s takes %s, got %d: usage: %s", subcommand(cmd), want, len(args), cmd.UseLine()))
		}
		return nil
	}
}

// didYouMean names the subcommands of cmd close to name (cobra's suggestions: by edit
// distance, by prefix and by SuggestFor), as "; did you mean ...?", or "".
func didYouMean(cmd *cobra.Command, name string) string {
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's default, which it sets only on its own path
	}
	s := cmd.SuggestionsFor(name)
	if len(s) == 0 {
		return ""
	}
	return "; did you mean " + strings.Join(s, " or ") + "?"
}

// subcommand is cmd's path without the leading "brr" that Run prefixes every error
// with: "jobs show", or "" for the root command.
func subcommand(cmd *cobra.Command) string {
	if !cmd.HasParent() {
		return ""
	}
	return strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
}

// context applies --timeout.
func (m *Main) context(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if m.timeout > 0 {
		return context.WithTimeout(ctx, m.timeout)
	}
	return context.WithCancel(ctx)
}

// errRefused is wrapped by the error of a command that NATS refused for lack of
// permission.
var errRefused = errors.New("NATS refused this command")

// connect dials NATS and returns a client on it; the caller closes the connection. A
// permission violation, which NATS reports apart from the request that caused it (that
// request would only time out), is passed to refuse, which ends the command.
func (m *Main) connect(refuse context.CancelCauseFunc) (*brr.Client, *nats.Conn, error) {
	if m.capture != nil {
		return nil, nil, errNotAJob
	}
	opts := []nats.Option{nats.Name("brr"), nats.Timeout(5 * time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				refuse(fmt.Errorf("%w: %v: the NATS user of this command lacks the permission; use the credentials of a role that has it (see docs/security.md)", errRefused, err))
				return
			}
			fmt.Fprintf(m.Stderr, "brr: %v\n", err)
		}),
	}
	switch {
	case m.creds != "":
		opts = append(opts, nats.UserCredentials(m.creds))
	case m.user != "":
		opts = append(opts, nats.UserInfo(m.user, m.password))
	case m.token != "":
		opts = append(opts, nats.Token(m.token))
	}
	if prefix := m.inbox(); prefix != "" {
		if err := brr.ValidateInboxPrefix(prefix); err != nil {
			return nil, nil, usageError(fmt.Errorf("%w: give another with --inbox-prefix (env BRR_NATS_INBOX_PREFIX)", err))
		}
		opts = append(opts, nats.CustomInboxPrefix(prefix))
	}
	if m.tlsCA != "" {
		opts = append(opts, nats.RootCAs(m.tlsCA))
	}
	if m.tlsCert != "" || m.tlsKey != "" {
		if m.tlsCert == "" || m.tlsKey == "" {
			return nil, nil, usageError(errors.New("--tls-cert and --tls-key go together"))
		}
		opts = append(opts, nats.ClientCert(m.tlsCert, m.tlsKey))
	}
	nc, err := nats.Connect(m.url, opts...)
	if err != nil {
		return nil, nil, &exitError{code: exitNoServer, err: connectError(m.url, err)}
	}
	c, err := brr.NewClient(nc, brr.WithPrefix(m.prefix), brr.WithPool(m.pool))
	if err != nil {
		nc.Close()
		return nil, nil, usageError(err)
	}
	return c, nc, nil
}

// inbox is the inbox prefix of the connection: --inbox-prefix, else that of the user who
// logs in by password (--user, or user:password in the URL), which is what the roles of
// deploy/nats/accounts.conf may subscribe to; "" (nats.go's _INBOX) for a token, a .creds
// file (its JWT names the user, and its permissions may name any prefix) or no login.
func (m *Main) inbox() string {
	switch {
	case m.inboxPrefix != "":
		return m.inboxPrefix
	case m.creds != "":
		return ""
	case m.user != "":
		return brr.InboxPrefix(m.user)
	case m.token != "":
		return ""
	}
	first, _, _ := strings.Cut(m.url, ",")
	if u, err := neturl.Parse(strings.TrimSpace(first)); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok && u.User.Username() != "" {
			return brr.InboxPrefix(u.User.Username())
		}
	}
	return "" // a URL with a token, or without a login
}

// withClient connects, runs fn and closes the connection.
func (m *Main) withClient(cmd *cobra.Command, fn func(ctx context.Context, c *brr.Client) error) error {
	return m.withConn(cmd, func(ctx context.Context, c *brr.Client, _ *nats.Conn) error { return fn(ctx, c) })
}

// withConn is withClient with the client's NATS connection too, for what the client does
// not offer (the repo registry).
func (m *Main) withConn(cmd *cobra.Command, fn func(ctx context.Context, c *brr.Client, nc *nats.Conn) error) error {
	ctx, cancel := m.context(cmd)
	defer cancel()
	ctx, refuse := context.WithCancelCause(ctx)
	defer refuse(nil)
	c, nc, err := m.connect(refuse)
	if err != nil {
		return err
	}
	defer nc.Close()
	err = fn(ctx, c, nc)
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, errRefused) {
		return cause
	}
	return err
}

// connectError says why NATS at url could not be used, and what to do.
func connectError(url string, err error) error {
	url = redactURLs(url)
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked):
		return fmt.Errorf("NATS at %s refused the login (%v): give the credentials of a brr user with --user and --password (env BRR_NATS_USER, BRR_NATS_PASSWORD), --token (BRR_NATS_TOKEN) or --creds (BRR_NATS_CREDS)", url, err)
	case errors.Is(err, nats.ErrTLS), errors.Is(err, nats.ErrSecureConnRequired), errors.Is(err, nats.ErrSecureConnWanted), strings.Contains(err.Error(), "x509:"), strings.Contains(err.Error(), "tls:"):
		return fmt.Errorf("TLS with NATS at %s failed (%v): give the CA that signed the server's certificate with --tls-ca, and --tls-cert and --tls-key when the server asks for a client certificate", url, err)
	}
	return fmt.Errorf("cannot reach NATS at %s: %v — is brr-worker running? (start one with: brr-worker)", url, err)
}

// redactURLs hides the password or token in the user info of each of the
// comma-separated URLs, as nats.go's ConnectedUrlRedacted does.
func redactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		u, err := neturl.Parse(strings.TrimSpace(p))
		if err != nil || u.User == nil {
			continue
		}
		if _, ok := u.User.Password(); ok {
			u.User = neturl.UserPassword(u.User.Username(), "xxxxx")
		} else {
			u.User = neturl.User("xxxxx")
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

// printJSON writes v as one line of JSON.
func (m *Main) printJSON(v any) error { return m.printJSONTo(m.Stdout, v) }

// printJSONTo is printJSON to w.
func (m *Main) printJSONTo(w io.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}

// printList prints items: one JSON object per line with --json, else a table with header
// (tab-separated columns) and one row per item; with no items it says empty on stderr.
func printList[T any](m *Main, items []T, empty, header string, row func(T) string) error {
	if m.json {
		for _, it := range items {
			if err := m.printJSON(it); err != nil {
				return err
			}
		}
		return nil
	}
	if len(items) == 0 {
		fmt.Fprintln(m.Stderr, empty)
		return nil
	}
	tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, it := range items {
		fmt.Fprintln(tw, row(it))
	}
	return tw.Flush()
}

// terminalWidth reports whether w is a terminal, and its width.
func terminalWidth(w io.Writer) (int, bool) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0, false
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil || width <= 0 {
		width = 80
	}
	return width, true
}

// shortID shortens a snapshot id for tables.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// oneLine flattens s for a table cell.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if max > 3 && len(s) > max {
		return s[:max-3] + "..."
	}
	return s
}
