package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/jobs"
)

// SourceConfig is a named source (docs/sources.md): what a backup job may name with
// --source-name instead of a path. Exactly one of path, command and sqlite says what it
// is. Commands and hooks are run by the worker with /bin/sh -c; they come from this file
// only, never from a message.
type SourceConfig struct {
	Path              string   `yaml:"path,omitempty"`
	Excludes          []string `yaml:"excludes,omitempty"`
	ExcludeFile       string   `yaml:"exclude_file,omitempty"`
	ExcludeCaches     bool     `yaml:"exclude_caches,omitempty"`
	OneFileSystem     bool     `yaml:"one_file_system,omitempty"`
	ExcludeLargerThan ByteSize `yaml:"exclude_larger_than,omitempty"`

	Command        string `yaml:"command,omitempty"`
	RestoreCommand string `yaml:"restore_command,omitempty"`
	// Filename is the name of the file a command's output is stored as (default
	// NAME.out).
	Filename string `yaml:"filename,omitempty"`
	SQLite   string `yaml:"sqlite,omitempty"`

	Before  string        `yaml:"before,omitempty"`
	After   string        `yaml:"after,omitempty"`
	Timeout time.Duration `yaml:"timeout,omitempty"`

	Repo  string       `yaml:"repo,omitempty"`
	Tags  []string     `yaml:"tags,omitempty"`
	Watch *WatchConfig `yaml:"watch,omitempty"`
}

// WatchConfig backs a source up as it changes (docs/sources.md).
type WatchConfig struct {
	Delay    time.Duration `yaml:"delay"`
	MaxDelay time.Duration `yaml:"max_delay"`
}

// validate checks a source; key is its config key, sources.NAME.
func (sc SourceConfig) validate(key, name string) error {
	var p problems
	if err := brr.ValidateSourceName(name); err != nil {
		p.bad("%s: source name %q: use 1-64 letters, digits, '-' or '_'", key, name)
	}
	kinds := 0
	for _, set := range []bool{sc.Path != "", sc.Command != "", sc.SQLite != ""} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		p.bad("%s: set exactly one of path (a directory tree), command (a command whose output is stored) and sqlite (a SQLite database file)", key)
	}
	for k, v := range map[string]string{"path": sc.Path, "sqlite": sc.SQLite, "exclude_file": sc.ExcludeFile} {
		if v != "" && (!filepath.IsAbs(v) || filepath.Clean(v) != v) {
			p.bad("%s.%s: must be an absolute, clean path, got %q", key, k, v)
		}
	}
	tree := brr.BackupJob{Path: sc.Path, Excludes: sc.Excludes, Tags: sc.Tags, Repo: sc.Repo}
	if sc.Path == "" {
		tree.Path = "/"
		if len(sc.Excludes) > 0 || sc.ExcludeFile != "" || sc.ExcludeCaches || sc.OneFileSystem || sc.ExcludeLargerThan != 0 {
			p.bad("%s: excludes, exclude_file, exclude_caches, one_file_system and exclude_larger_than apply to a path source only", key)
		}
	}
	if err := tree.Validate(); err != nil {
		p.bad("%s: %s", key, strings.TrimPrefix(err.Error(), brr.ErrInvalid.Error()+": "))
	}
	if sc.ExcludeLargerThan < 0 {
		p.bad("%s.exclude_larger_than: must be a size such as 100M, or 0 for no limit", key)
	}
	if sc.Command == "" && (sc.RestoreCommand != "" || sc.Filename != "") {
		p.bad("%s: restore_command and filename belong to a command source", key)
	}
	if sc.Filename != "" && (strings.ContainsAny(sc.Filename, "/\x00") || sc.Filename == "." || sc.Filename == "..") {
		p.bad("%s.filename: %q must be a plain file name", key, sc.Filename)
	}
	if sc.Timeout < 0 {
		p.bad("%s.timeout: must be a positive duration such as 1h, or 0 for the default (%s)", key, jobs.DefaultSourceTimeout)
	}
	if w := sc.Watch; w != nil {
		switch {
		case sc.Command != "":
			p.bad("%s.watch: a command source has nothing to watch; watch a path or sqlite source", key)
		case w.Delay <= 0 || w.MaxDelay <= 0:
			p.bad("%s.watch: set delay and max_delay, positive durations such as {delay: 5s, max_delay: 1m}", key)
		case w.MaxDelay < w.Delay:
			p.bad("%s.watch: max_delay (%s) must not be shorter than delay (%s)", key, w.MaxDelay, w.Delay)
		}
	}
	return p.err()
}

// validateSources checks every source, and that the repos they name are configured.
func (c *Config) validateSources() error {
	var p problems
	for _, name := range sortedKeys(c.Sources) {
		key := "sources." + name
		sc := c.Sources[name]
		p.add(sc.validate(key, name))
		if sc.Repo != "" {
			if _, ok := c.Repos[sc.Repo]; !ok {
				p.bad("%s.repo: %q is not configured (configured: %s)%s", key, sc.Repo, strings.Join(c.repoNames(), ", "), c.addLocal(sc.Repo))
			}
		}
	}
	return p.err()
}

// engineSources are the sources as the job engine takes them: the exclude file read into
// the excludes, after the source's own patterns.
func (c *Config) engineSources() (map[string]jobs.Source, error) {
	out := make(map[string]jobs.Source, len(c.Sources))
	for name, sc := range c.Sources {
		src := jobs.Source{
			Name: name, Path: sc.Path, Excludes: sc.Excludes, ExcludeCaches: sc.ExcludeCaches, OneFileSystem: sc.OneFileSystem,
			ExcludeLargerThan: int64(sc.ExcludeLargerThan), Command: sc.Command, RestoreCommand: sc.RestoreCommand,
			Filename: sc.Filename, SQLite: sc.SQLite, Before: sc.Before, After: sc.After, Timeout: sc.Timeout,
			Repo: sc.Repo, Tags: sc.Tags,
		}
		if src.Command != "" && src.Filename == "" {
			src.Filename = name + ".out"
		}
		if sc.ExcludeFile != "" {
			data, err := os.ReadFile(sc.ExcludeFile)
			if err != nil {
				return nil, fmt.Errorf("sources.%s.exclude_file: %w", name, err)
			}
			lines := brr.ExcludeLines(data)
			for _, l := range lines {
				if err := brr.ValidateExclude(l); err != nil {
					return nil, fmt.Errorf("sources.%s.exclude_file %s: %w", name, sc.ExcludeFile, err)
				}
			}
			src.Excludes = append(append([]string(nil), src.Excludes...), lines...)
		}
		if w := sc.Watch; w != nil {
			src.Watch = &jobs.Watch{Delay: w.Delay, MaxDelay: w.MaxDelay}
		}
		out[name] = src
	}
	return out, nil
}
