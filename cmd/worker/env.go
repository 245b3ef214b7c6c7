package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Environment is what configuration loading reads from the process: its environment
// variables and whether it runs as root. Tests pass their own.
type Environment struct {
	Getenv func(string) string
	UID    int
}

// defaultDataDir is /var/lib/brr for root, else $XDG_DATA_HOME/brr or ~/.local/share/brr.
func defaultDataDir(env Environment) (string, error) {
	if env.UID == 0 {
		return "/var/lib/brr", nil
	}
	if x := env.Getenv("XDG_DATA_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "brr"), nil
	}
	home := env.Getenv("HOME")
	if home == "" {
		return "", errors.New("data_dir: not set and $HOME is empty; set data_dir, BRR_DATA_DIR or --data-dir")
	}
	return filepath.Join(home, ".local", "share", "brr"), nil
}

// applyEnv overrides cfg with the BRR_* environment variables that are set.
func applyEnv(cfg *Config, getenv func(string) string) error {
	str := func(name string, dst *string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	str("BRR_DATA_DIR", &cfg.DataDir)
	str("BRR_NATS_URL", &cfg.NATS.URL)
	str("BRR_NATS_LISTEN", &cfg.NATS.Listen)
	str("BRR_NATS_CREDS", &cfg.NATS.Creds)
	str("BRR_NATS_USER", &cfg.NATS.User)
	str("BRR_NATS_PASSWORD", &cfg.NATS.Password)
	str("BRR_NATS_TOKEN", &cfg.NATS.Token)
	str("BRR_NATS_INBOX_PREFIX", &cfg.NATS.InboxPrefix)
	str("BRR_HTTP_LISTEN", &cfg.HTTP.Listen)
	str("BRR_HTTP_API_KEY_FILE", &cfg.HTTP.APIKeyFile)
	str("BRR_DEFAULT_REPO", &cfg.DefaultRepo)
	str("BRR_LOG_LEVEL", &cfg.Log.Level)
	str("BRR_LOG_FORMAT", &cfg.Log.Format)
	str("BRR_PREFIX", &cfg.Prefix)
	if v := getenv("BRR_POOLS"); v != "" {
		cfg.Pools = splitList(v)
	}
	if v := getenv("BRR_ALLOWED_ROOTS"); v != "" {
		cfg.AllowedRoots = splitList(v)
	}
	if v := getenv("BRR_CONCURRENCY"); v != "" {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("BRR_CONCURRENCY: want a whole number, got %q", v)
		}
		cfg.Concurrency = n
	}
	// GOGC, read by the Go runtime itself, replaces the default gc_percent; BRR_GC_PERCENT
	// (or gc_percent, or --gc-percent) replaces both.
	if getenv("GOGC") != "" && cfg.GCPercent == DefaultGCPercent {
		cfg.GCPercent = 0
	}
	if v := getenv("BRR_GC_PERCENT"); v != "" {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("BRR_GC_PERCENT: want a whole number, got %q", v)
		}
		cfg.GCPercent = n
	}
	if v := getenv("BRR_MEMORY_LIMIT"); v != "" {
		n, err := ParseByteSize(v)
		if err != nil {
			return fmt.Errorf("BRR_MEMORY_LIMIT: %w", err)
		}
		cfg.MemoryLimit = n
	}
	if v := getenv("BRR_PRUNE_GRACE"); v != "" {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("BRR_PRUNE_GRACE: want a duration such as 1h or 30m, got %q", v)
		}
		cfg.Prune.Grace = d
	}
	if v := getenv("BRR_HTTP_PROTECT_READS"); v != "" {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("BRR_HTTP_PROTECT_READS: want true or false, got %q", v)
		}
		cfg.HTTP.ProtectReads = b
	}
	if v := getenv("BRR_HEALTH_INTERVAL"); v != "" {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("BRR_HEALTH_INTERVAL: want a duration such as 15s or 1m, got %q", v)
		}
		cfg.Health.Interval = d
	}
	return nil
}

// splitList splits a comma-separated list, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
