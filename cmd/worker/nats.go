package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
)

// startEmbedded starts a nats-server with JetStream, its store under dataDir/jetstream and
// its client listener on listen, for a worker with no nats.url. Port 0 picks a free port.
func startEmbedded(dataDir, listen, name string, log zerolog.Logger) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("nats.listen %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("nats.listen %q: port: %w", listen, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT // 0 means 4222 to nats-server
	}
	opts := &server.Options{
		ServerName:             name,
		Host:                   host,
		Port:                   port,
		JetStream:              true,
		StoreDir:               filepath.Join(dataDir, "jetstream"),
		NoSigs:                 true,
		DisableJetStreamBanner: true,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	ns.SetLoggerV2(serverLogger{log: log.With().Str("component", "nats-server").Logger()}, log.GetLevel() <= zerolog.DebugLevel, log.GetLevel() <= zerolog.TraceLevel, false)
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("embedded nats-server on %s did not get ready in 30s (is the address in use? set nats.listen, BRR_NATS_LISTEN or --listen)", listen)
	}
	return ns, nil
}

// shutdownEmbedded returns the embedded server's close: shut it down and wait until it has.
func shutdownEmbedded(ns *server.Server) func() error {
	return func() error {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil
	}
}

// serverLogger routes the embedded server's logs into zerolog. The server's notices are
// chatty start-up detail, so they go to debug; its warnings and errors keep their level.
type serverLogger struct{ log zerolog.Logger }

func (l serverLogger) Noticef(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l serverLogger) Warnf(format string, v ...any)   { l.log.Warn().Msgf(format, v...) }
func (l serverLogger) Errorf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l serverLogger) Debugf(format string, v ...any)  { l.log.Debug().Msgf(format, v...) }
func (l serverLogger) Tracef(format string, v ...any)  { l.log.Trace().Msgf(format, v...) }

// Fatalf is logged as an error: the server is embedded, and exiting is main's decision.
func (l serverLogger) Fatalf(format string, v ...any) {
	l.log.Error().Bool("fatal", true).Msgf(format, v...)
}

var _ server.Logger = serverLogger{}

// connectNATS connects to the embedded server in-process, or to cfg.URL with the
// configured credentials. The connection reconnects forever with jittered backoff and
// logs its disconnects and reconnects.
func connectNATS(cfg NATSConfig, embedded *server.Server, name string, log zerolog.Logger) (*nats.Conn, error) {
	log = log.With().Str("component", "nats").Logger()
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(reconnectDelay),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			// A nil error is our own Close at shutdown: not news.
			if err != nil {
				log.Warn().Err(err).Msg("disconnected from nats; reconnecting")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str("url", redactURL(nc.ConnectedUrl())).Msg("reconnected to nats")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := log.Warn().Err(err)
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("nats async error")
		}),
	}
	if prefix := cfg.inboxPrefix(); prefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(prefix))
	}
	url := cfg.URL
	if embedded != nil {
		opts = append(opts, nats.InProcessServer(embedded))
		url = ""
	} else {
		switch {
		case cfg.Creds != "":
			opts = append(opts, nats.UserCredentials(cfg.Creds))
		case cfg.User != "":
			opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
		case cfg.Token != "":
			opts = append(opts, nats.Token(cfg.Token))
		}
		if cfg.TLS.CA != "" {
			opts = append(opts, nats.RootCAs(cfg.TLS.CA))
		}
		if cfg.TLS.Cert != "" {
			opts = append(opts, nats.ClientCert(cfg.TLS.Cert, cfg.TLS.Key))
		}
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		where := "embedded server"
		if embedded == nil {
			where = redactURL(cfg.URL)
		}
		if errors.Is(err, nats.ErrNoServers) {
			return nil, fmt.Errorf("connect to nats at %s: %w (is nats-server running there? check nats.url, BRR_NATS_URL or --nats)", where, err)
		}
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
			return nil, fmt.Errorf("connect to nats at %s: %w (the server refused the login: check nats.user and nats.password (BRR_NATS_USER, BRR_NATS_PASSWORD), nats.token (BRR_NATS_TOKEN) or nats.creds (BRR_NATS_CREDS))", where, err)
		}
		if errors.Is(err, nats.ErrTLS) || errors.Is(err, nats.ErrSecureConnRequired) || errors.Is(err, nats.ErrSecureConnWanted) || strings.Contains(err.Error(), "x509:") || strings.Contains(err.Error(), "tls:") {
			return nil, fmt.Errorf("connect to nats at %s: %w (check nats.tls: ca must have signed the server's certificate; cert and key are needed when the server asks for a client certificate)", where, err)
		}
		return nil, fmt.Errorf("connect to nats at %s: %w", where, err)
	}
	return nc, nil
}

// inboxPrefix is nats.inbox_prefix, else that of nats.user ("_INBOX_worker"), which is
// what deploy/nats/accounts.conf lets the worker subscribe to; "" (nats.go's "_INBOX")
// for creds, whose JWT names the user and its permissions, a token, or no login.
func (n NATSConfig) inboxPrefix() string {
	switch {
	case n.InboxPrefix != "":
		return n.InboxPrefix
	case n.Creds == "" && n.User != "":
		return brr.InboxPrefix(n.User)
	}
	return ""
}

// closeNATS returns the connection's close: send what it has buffered, within 5s, and
// close it.
func closeNATS(nc *nats.Conn, log zerolog.Logger) func() error {
	return func() error {
		if err := nc.FlushTimeout(5 * time.Second); err != nil && nc.IsConnected() {
			log.Warn().Err(err).Msg("flush nats connection")
		}
		nc.Close()
		return nil
	}
}

// reconnectDelay backs off from 250ms to 10s, with up to 50% jitter so that a pool of
// workers does not reconnect in step.
func reconnectDelay(attempts int) time.Duration {
	d := 250 * time.Millisecond << min(attempts, 6)
	d = min(d, 10*time.Second)
	return d/2 + rand.N(d/2+1)
}
