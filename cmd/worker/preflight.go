package main

import "github.com/rs/zerolog"

// preflight checks what the configuration names outside itself (files it reads) and that
// the worker would otherwise meet only halfway through its start, after it made its data
// dir, state, embedded server and repository "local": the API key file, the exclude
// files of sources and the webhooks' secret files. `brr-worker config` runs it too, so that what it accepts the worker
// does not then refuse. It reports every problem, and changes nothing.
func preflight(cfg Config) error {
	var p problems
	if _, err := loadAPIKey(cfg.HTTP.APIKeyFile, zerolog.Nop()); err != nil {
		p.add(err)
	}
	if _, err := cfg.engineSources(); err != nil {
		p.add(err)
	}
	if _, err := cfg.notifyTargets(); err != nil {
		p.add(err)
	}
	return p.err()
}
