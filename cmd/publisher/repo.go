package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/repo/location"
)

// adminNote ends the help of every command that writes the pool's repo registry.
const adminNote = `It writes the KV bucket BRR_REPOS, so it needs the NATS admin role
(docs/security.md): the publisher role may not write KV buckets.`

func (m *Main) repoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repo [ls | add NAME URL | rm NAME]",
		Short: "List, add or remove the repositories of a worker pool at runtime",
		Long: `The repos of a pool are what its jobs name with --repo (and replicate with --from and
--to). The workers of a pool agree on them through the pool's registry, the KV bucket
BRR_REPOS: a repo listed in a worker's config is registered there at the worker's start,
and "brr repo add" registers one for every worker of the pool at once. Workers watch the
registry and open a repo added there, or drop one removed, within seconds, without a
restart.

The registry holds no secret: only the names of the environment variables and the
paths of the files that hold a repo's password and credentials on each worker.

Without a subcommand, brr repo lists the repos of the pool (--pool, default "default").`,
		Example: `  brr repo add offsite s3://s3.example.com/brr-backups --password-env BRR_OFFSITE_PASSWORD
  brr repo ls
  brr repo rm offsite`,
		Args: args(0, 0),
		RunE: m.repoLs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "ls",
		Short: "List the pool's repos, which workers serve each and which refuse it",
		Long: `List the repos registered for the pool (--pool, default "default"): NAME, the URL the
workers open it at, the repository's ID (short; "not opened yet" until a worker has
opened or created it), OPTIONS (append-only, traffic limits), the repos each new
snapshot is replicated to (see brr replicate policy) and the live workers that serve it.

Below the table, one line per live worker that does not serve a repo, with why and what
to do: most often it lacks the repo's secret (the environment variable or key file), or
its own config names another repository under that name. --json prints each repo as one
JSON object per line, with the whole spec and the refusals.

It reads the KV bucket BRR_REPOS, which holds no secret: the publisher role may read it
(docs/security.md); adding and removing repos needs the admin role.`,
		Example: `  brr repo ls
  brr repo ls --pool edge --json`,
		Args: args(0, 0),
		RunE: m.repoLs,
	})
	cmd.AddCommand(m.repoAddCmd(), m.repoRmCmd())
	return cmd
}

func (m *Main) repoAddCmd() *cobra.Command {
	var spec brr.RepoSpec
	cmd := &cobra.Command{
		Use:   "add NAME URL (--password-env VAR | --key-file FILE) [options]",
		Short: "Add a repository to every worker of the pool",
		Long: `Register repo NAME for the pool (--pool, default "default"). Every worker of the pool
opens the repository at URL within seconds, without a restart, and creates it there
when the location holds none; jobs then name it with --repo NAME.

URL is one of:
  file:///ABSOLUTE/PATH                   a directory on each worker's host (with more
                                          than one worker, a mount they share)
  nats://BUCKET                           a JetStream object store on the workers' NATS
  s3://HOST[:PORT]/BUCKET[/PREFIX]        an S3-compatible bucket over https
                                          (s3:http://... for a server without TLS)
  sftp://[USER@]HOST[:PORT]/PATH          a directory on a server reached over SSH
A URL holds no secret: one with a password or an access key in it is refused.

Neither does the registry: give the name of the environment variable that holds the
repository's password on each worker (--password-env), or the absolute path of the key
file there (--key-file); likewise for the S3 credentials and the SSH key. Set them on
every worker before or after adding the repo: a worker that lacks them does not serve
the repo, says why in "brr repo ls" and "brr workers", and tries again every minute.

The options are the keys of repos.NAME in a worker's config (docs/configuration.md),
and are checked the same way before anything is written. A name the pool has already
is refused: remove it first with "brr repo rm NAME".

` + adminNote,
		Example: `  # a repository on a disk every worker mounts, its password in an environment variable
  brr repo add archive file:///mnt/backup/brr --password-env BRR_ARCHIVE_PASSWORD
  # an S3 bucket, append-only, with the credentials in named environment variables
  brr repo add offsite s3://s3.example.com/brr-backups/prod --key-file /etc/brr/offsite.key \
      --access-key-env OFFSITE_AWS_ACCESS_KEY_ID --secret-key-env OFFSITE_AWS_SECRET_ACCESS_KEY \
      --region eu-west-1 --append-only --limit-upload 10240
  # an SFTP server, for the workers of pool edge
  brr repo add vault sftp://brr@vault.example.com/srv/brr --password-env BRR_VAULT_PASSWORD \
      --ssh-key-file /etc/brr/id_ed25519 --known-hosts /etc/brr/known_hosts --pool edge`,
		Args: args(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := validateRepoName(name); err != nil {
				return err
			}
			spec.URL = args[1]
			if err := spec.Validate("repo " + name); err != nil {
				return usageError(specError("repo add", "repo "+name, err))
			}
			return m.withRegistry(cmd, func(ctx context.Context, c *brr.Client, registry *events.Registry) error {
				host, _ := os.Hostname()
				reg := brr.RepoRegistration{Pool: m.pool, Repo: name, Worker: who(), Host: host, Time: time.Now().UTC(), Spec: &spec}
				if err := registry.Add(ctx, reg); err != nil {
					return err
				}
				if m.json {
					return m.printJSON(reg)
				}
				fmt.Fprintf(m.Stdout, "repo %s added to pool %s: %s\n", name, m.pool, spec.URL)
				fmt.Fprintf(m.Stdout, "The workers of pool %s open it within seconds, and create the repository there if it holds none.\n", m.pool)
				fmt.Fprintln(m.Stdout, "Each worker needs, on its own host:")
				for _, s := range secretsOf(spec) {
					fmt.Fprintf(m.Stdout, "  - %s\n", s)
				}
				fmt.Fprintln(m.Stdout, "A worker that lacks them does not serve the repo, and says why.")
				fmt.Fprintf(m.Stdout, "See which workers serve it: brr repo ls%s\n", m.poolFlag())
				if _, err := c.Served(ctx, ""); errors.Is(err, brr.ErrNoWorker) {
					fmt.Fprintf(m.Stderr, "brr: warning: %v; the first worker of pool %s to start opens repo %s\n", err, m.pool, name)
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.PasswordEnv, "password-env", "", "environment variable that holds the repository's password on each worker")
	f.StringVar(&spec.KeyFile, "key-file", "", "absolute path of the file that holds the repository's key on each worker")
	f.BoolVar(&spec.AppendOnly, "append-only", false, "never delete or overwrite anything in the repository (prune and checkpoint removal are refused)")
	f.IntVar(&spec.LimitUpload, "limit-upload", 0, "cap the traffic to the repository, in KiB/s per worker (default: no limit)")
	f.IntVar(&spec.LimitDownload, "limit-download", 0, "cap the traffic from the repository, in KiB/s per worker (default: no limit)")
	f.StringVar(&spec.Region, "region", "", "s3: the bucket's region")
	f.StringVar(&spec.PathStyle, "path-style", "", `s3: "auto" (default), "path" (https://host/bucket: MinIO, most self-hosted servers) or "virtual" (https://bucket.host)`)
	f.StringVar(&spec.AccessKeyEnv, "access-key-env", "", "s3: environment variable that holds the access key id on each worker (default AWS_ACCESS_KEY_ID)")
	f.StringVar(&spec.SecretKeyEnv, "secret-key-env", "", "s3: environment variable that holds the secret access key on each worker (default AWS_SECRET_ACCESS_KEY)")
	f.StringVar(&spec.SessionTokenEnv, "session-token-env", "", "s3: environment variable that holds the session token on each worker (default AWS_SESSION_TOKEN)")
	f.StringVar(&spec.CredentialsFile, "credentials-file", "", "s3: absolute path of an AWS shared credentials file on each worker")
	f.StringVar(&spec.Profile, "profile", "", `s3: section of --credentials-file (default "default")`)
	f.StringVar(&spec.SSHKeyFile, "ssh-key-file", "", "sftp: absolute path of the private key to log in with on each worker (default: the ssh agent, then ~/.ssh/id_*)")
	f.StringVar(&spec.KnownHosts, "known-hosts", "", "sftp: absolute path of the file on each worker that holds the server's host key (default ~/.ssh/known_hosts)")
	return cmd
}

func (m *Main) repoRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a repo from the pool; its data stays where it is",
		Long: `Remove repo NAME from the pool's registry (--pool, default "default"), and from the
replication policies of the pool's other repos. The workers of the pool stop serving it
within seconds; jobs that name it fail from then on. Its data stays where it is: add it
again with "brr repo add" to serve it again, or delete it by hand.

A worker whose config lists the repo (repos.NAME) registers it again at its next start:
remove it from those configs too.

` + adminNote,
		Example: `  brr repo rm offsite
  brr repo rm vault --pool edge`,
		Args: args(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := validateRepoName(name); err != nil {
				return err
			}
			return m.withRegistry(cmd, func(ctx context.Context, _ *brr.Client, registry *events.Registry) error {
				// Read before the removal, only to say what it changed.
				regs, err := registry.List(ctx, m.pool)
				if err != nil {
					return err
				}
				if err := registry.Remove(ctx, m.pool, name); err != nil {
					if errors.Is(err, brr.ErrNotFound) {
						return fmt.Errorf("%w; list the pool's repos with: brr repo ls%s", err, m.poolFlag())
					}
					return err
				}
				if m.json {
					return m.printJSON(map[string]any{"pool": m.pool, "repo": name, "removed": true})
				}
				where, from := "", []string{}
				for _, reg := range regs {
					switch {
					case reg.Repo == name:
						where = repoURL(reg.Spec, reg.Location)
					case reg.ReplicateTo != nil && slices.Contains(*reg.ReplicateTo, name):
						from = append(from, reg.Repo)
					}
				}
				fmt.Fprintf(m.Stdout, "repo %s removed from pool %s\n", name, m.pool)
				fmt.Fprintf(m.Stdout, "The workers of pool %s stop serving it within seconds. Its data stays where it is (%s).\n", m.pool, where)
				if len(from) > 0 {
					fmt.Fprintf(m.Stdout, "Snapshots of %s are no longer replicated to it.\n", strings.Join(from, ", "))
				}
				fmt.Fprintf(m.Stdout, "A worker whose config lists repos.%s registers it again at its next start: remove it from those configs too.\n", name)
				return nil
			})
		},
	}
}

// repoLs lists the pool's registrations with the workers that serve or refuse each.
func (m *Main) repoLs(cmd *cobra.Command, _ []string) error {
	return m.withRegistry(cmd, func(ctx context.Context, c *brr.Client, registry *events.Registry) error {
		regs, err := registry.List(ctx, m.pool)
		if err != nil {
			return err
		}
		workers, err := c.Workers(ctx)
		if err != nil {
			return err
		}
		infos := brr.RepoInfos(regs, workers)
		empty := fmt.Sprintf("pool %s has no repos (add one with: brr repo add NAME URL --password-env VAR%s)", m.pool, m.poolFlag())
		err = printList(m, infos, empty, "NAME\tURL\tID\tOPTIONS\tREPLICATE TO\tSERVED BY", func(r brr.RepoInfo) string {
			id := shortID(r.ID)
			if id == "" {
				id = "not opened yet"
			}
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", r.Name, repoURL(r.Spec, r.Location), id, repoOptions(r.Spec),
				listOrDash(r.ReplicateTo), listOrDash(r.ServedBy))
		})
		if err != nil || m.json {
			return err
		}
		for _, r := range infos {
			for _, w := range slices.Sorted(maps.Keys(r.RefusedBy)) {
				fmt.Fprintf(m.Stderr, "worker %s does not serve %s: %s\n", w, r.Name, r.RefusedBy[w])
			}
		}
		return nil
	})
}

// withRegistry is withClient with the pool's repo registry opened too.
func (m *Main) withRegistry(cmd *cobra.Command, fn func(ctx context.Context, c *brr.Client, registry *events.Registry) error) error {
	return m.withConn(cmd, func(ctx context.Context, c *brr.Client, nc *nats.Conn) error {
		js, err := jetstream.New(nc)
		if err != nil {
			return fmt.Errorf("jetstream: %w", err)
		}
		subj := brr.Subjects{Prefix: m.prefix}
		registry, err := events.OpenRegistry(ctx, js, events.Config{Subjects: subj})
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("%w: bucket %s not found: is a brr-worker running and connected to %s? It creates the bucket at its start",
				brr.ErrNoStream, subj.ReposBucket(), nc.ConnectedUrlRedacted())
		}
		if err != nil {
			return err
		}
		return fn(ctx, c, registry)
	})
}

// poolFlag is the --pool flag that names the pool in a command suggested to the user,
// "" for the default pool.
func (m *Main) poolFlag() string {
	if m.pool == brr.DefaultPool {
		return ""
	}
	return " --pool " + m.pool
}

// validateRepoName checks the NAME of a repo command; unlike in a job, it cannot be empty.
func validateRepoName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty repo name: use 1-64 letters, digits, '-' or '_'", brr.ErrInvalid)
	}
	return brr.ValidateRepoName(name)
}

// specKey is a key of a repo's spec as RepoSpec.Validate names it: repos.NAME.key_file.
var specKey = regexp.MustCompile(`\b(url|[a-z]+(_[a-z]+)+)\b`)

// specError is err, the problems RepoSpec.Validate found in a spec it was given under
// key, with the spec's keys named as the flags of brr repo add: "repo x.key_file: …"
// reads "repo x: --key-file: …". Quoted values are left as they are.
func specError(cmd, key string, err error) error {
	flags := map[string]bool{}
	for _, k := range []string{"key_file", "password_env", "append_only", "limit_upload", "limit_download", "region", "path_style",
		"access_key_env", "secret_key_env", "session_token_env", "credentials_file", "profile", "ssh_key_file", "known_hosts"} {
		flags[k] = true
	}
	flag := func(k string) string {
		if k == "url" {
			return "URL"
		}
		if flags[k] {
			return "--" + strings.ReplaceAll(k, "_", "-")
		}
		return k
	}
	lines := strings.Split(err.Error(), "\n")
	for i, line := range lines {
		head, rest := "", line
		if r, ok := strings.CutPrefix(line, key+"."); ok {
			k, after, _ := strings.Cut(r, ":")
			head, rest = key+": "+flag(k)+":", after
		} else if r, ok := strings.CutPrefix(line, key+":"); ok {
			head, rest = key+":", r
		}
		lines[i] = head + outsideQuotes(rest, func(s string) string { return specKey.ReplaceAllStringFunc(s, flag) })
	}
	if len(lines) == 1 {
		return fmt.Errorf("%s: %s", cmd, lines[0])
	}
	return fmt.Errorf("%s: %d problems:\n  %s", cmd, len(lines), strings.Join(lines, "\n  "))
}

// outsideQuotes applies fn to the parts of s outside its double-quoted (%q) strings.
func outsideQuotes(s string, fn func(string) string) string {
	var b strings.Builder
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case quoted && s[i] == '\\':
			i++ // an escaped character, maybe a quote
		case s[i] == '"':
			part := s[start:i]
			if !quoted {
				part = fn(part)
			}
			b.WriteString(part)
			b.WriteByte('"')
			quoted, start = !quoted, i+1
		}
	}
	rest := s[min(start, len(s)):]
	if !quoted {
		rest = fn(rest)
	}
	b.WriteString(rest)
	return b.String()
}

// secretsOf says what each worker needs on its host to open a repo of spec: the
// variables and files it names, or where the worker looks when it names none.
func secretsOf(spec brr.RepoSpec) []string {
	var out []string
	switch {
	case spec.PasswordEnv != "":
		out = append(out, fmt.Sprintf("the environment variable %s, holding the repository's password", spec.PasswordEnv))
	case spec.KeyFile != "":
		out = append(out, fmt.Sprintf("the key file %s", spec.KeyFile))
	}
	loc, err := location.Parse(spec.URL)
	if err != nil {
		return out
	}
	switch loc.Scheme {
	case "s3":
		switch {
		case spec.AccessKeyEnv != "":
			vars := spec.AccessKeyEnv + " and " + spec.SecretKeyEnv
			if spec.SessionTokenEnv != "" {
				vars = spec.AccessKeyEnv + ", " + spec.SecretKeyEnv + " and " + spec.SessionTokenEnv
			}
			out = append(out, fmt.Sprintf("the S3 credentials in the environment variables %s", vars))
		case spec.CredentialsFile != "":
			where := "the file " + spec.CredentialsFile
			if spec.Profile != "" {
				where += ", section " + spec.Profile
			}
			out = append(out, "the S3 credentials in "+where)
		default:
			out = append(out, "the S3 credentials in the environment variables AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
		}
	case "sftp":
		if spec.SSHKeyFile != "" {
			out = append(out, fmt.Sprintf("the SSH key file %s", spec.SSHKeyFile))
		} else {
			out = append(out, "an SSH key: in the ssh agent at $SSH_AUTH_SOCK, or ~/.ssh/id_ed25519, id_ecdsa or id_rsa")
		}
		knownHosts := spec.KnownHosts
		if knownHosts == "" {
			knownHosts = "~/.ssh/known_hosts"
		}
		out = append(out, fmt.Sprintf("the server's host key in %s", knownHosts))
	}
	return out
}

// repoURL is where a repo is: the URL of its spec, else the location a worker
// registered.
func repoURL(spec *brr.RepoSpec, loc string) string {
	if spec != nil && spec.URL != "" {
		return spec.URL
	}
	return loc
}

// repoOptions sums up the options of spec that change what workers do with the repo,
// "-" when none.
func repoOptions(spec *brr.RepoSpec) string {
	if spec == nil {
		return "-"
	}
	var opts []string
	if spec.AppendOnly {
		opts = append(opts, "append-only")
	}
	if spec.LimitUpload > 0 {
		opts = append(opts, fmt.Sprintf("limit-upload=%dKiB/s", spec.LimitUpload))
	}
	if spec.LimitDownload > 0 {
		opts = append(opts, fmt.Sprintf("limit-download=%dKiB/s", spec.LimitDownload))
	}
	return listOrDash(opts)
}

// listOrDash joins names with commas, "-" when there are none.
func listOrDash(names []string) string {
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, ",")
}
