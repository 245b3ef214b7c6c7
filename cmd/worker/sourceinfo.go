package main

import (
	"slices"

	"github.com/brr-dev/brr"
)

// sourceInfos are the named sources of the config as heartbeats carry them, sorted by
// name: what each is and where its backups go, never the text of a command or a hook,
// which readers of heartbeats need not see (they may name hosts, users or files).
func (c Config) sourceInfos() []brr.SourceInfo {
	if len(c.Sources) == 0 {
		return nil
	}
	out := make([]brr.SourceInfo, 0, len(c.Sources))
	for _, name := range sortedKeys(c.Sources) {
		sc := c.Sources[name]
		info := brr.SourceInfo{Name: name, Repo: sc.Repo, Tags: slices.Clone(sc.Tags)}
		switch {
		case sc.Command != "":
			info.Kind = brr.SourceCommand
		case sc.SQLite != "":
			info.Kind, info.Path = brr.SourceSQLite, sc.SQLite
		default:
			info.Kind, info.Path = brr.SourcePath, sc.Path
		}
		if w := sc.Watch; w != nil {
			info.Watch = &brr.SourceWatch{DelayMS: w.Delay.Milliseconds(), MaxDelayMS: w.MaxDelay.Milliseconds()}
		}
		out = append(out, info)
	}
	return out
}
