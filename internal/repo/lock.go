package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"
)

// DefaultLockStale is how long a writer lock may go unrefreshed before GC takes its
// writer for dead and ignores the lock.
const DefaultLockStale = 30 * time.Minute

// lockRefreshEvery is how often a writer lock is refreshed; tests shorten it.
var lockRefreshEvery = DefaultLockStale / 6

// lockObject is the stored form of a writer lock.
type lockObject struct {
	V         int       `json:"v"`
	Created   time.Time `json:"created"`
	Refreshed time.Time `json:"refreshed"`
	Who       string    `json:"who"`
	Host      string    `json:"host"`
	// Plans names the plans whose packs the writer never reuses: those its Repository
	// knew before it read the index for this writer. GC carries out any other plan only
	// once this lock is gone or stale.
	Plans []string `json:"plans"`
}

const lockVersion = 1

// decodeLock parses the plaintext of a lock object.
func decodeLock(data []byte) (*lockObject, error) {
	var l lockObject
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("%w: decode lock: %w", ErrDamaged, err)
	}
	if l.V != lockVersion {
		return nil, fmt.Errorf("decode lock: version %d, this brr reads version %d; upgrade brr", l.V, lockVersion)
	}
	return &l, nil
}

// LockWriter records that a writer (a backup, a replication into this repository) is
// running, so that GC does not delete packs the writer may rely on: a lock object saved
// now and refreshed every DefaultLockStale/6 until release is called. It reloads the index
// (ReloadIndex), so the writer knows every plan saved before the lock, and records the
// plans it knows in the lock: GC waits for the writer before carrying out any other plan.
// Call it before reading the index or the snapshots, and call release when the writer has
// saved its snapshot or given up; release removes the lock.
func (r *Repository) LockWriter(ctx context.Context, who string) (release func(), err error) {
	host := r.opts.Host
	if host == "" {
		host, _ = os.Hostname()
	}
	h := Handle{Type: LockFile, Name: randomName()}
	now := time.Now().UTC()
	// The plans known before the lock is saved are honoured from before it exists.
	lk := &lockObject{V: lockVersion, Created: now, Refreshed: now, Who: who, Host: host, Plans: r.idx.knownPlans()}
	if err := r.saveJSON(ctx, h, lk); err != nil {
		return nil, fmt.Errorf("take writer lock: %w", err)
	}
	unlock := func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = r.be.Remove(ctx, h) // a lock left behind goes stale and is ignored
	}
	known, err := r.reloadIndex(ctx)
	if err == nil && !slices.Equal(known, lk.Plans) {
		lk.Plans = known
		err = r.saveJSON(ctx, h, lk)
	}
	if err != nil {
		unlock()
		return nil, fmt.Errorf("take writer lock: %w", err)
	}

	every := lockRefreshEvery
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			lk.Refreshed = time.Now().UTC()
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), every)
			_ = r.saveJSON(ctx, h, lk) // tried again at the next tick; stale only after several
			cancel()
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stop)
			<-done // so that no refresh saves the lock again after it is removed
			unlock()
		})
	}, nil
}

// writerLock is a lock object as GC reads it.
type writerLock struct {
	name string
	obj  *lockObject
	err  error // it cannot be read: damaged (wraps ErrDamaged), or a newer version
}

// listLocks reads every writer lock.
func (r *Repository) listLocks(ctx context.Context) ([]writerLock, error) {
	names, err := r.listNames(ctx, LockFile)
	if err != nil {
		return nil, err
	}
	locks := make([]writerLock, 0, len(names))
	for _, name := range names {
		plain, err := r.loadObject(ctx, Handle{Type: LockFile, Name: name})
		if IsNotExist(err) {
			continue // released since listed
		}
		if err != nil && !errors.Is(err, ErrDamaged) {
			return nil, err
		}
		l := writerLock{name: name, err: err}
		if err == nil {
			l.obj, l.err = decodeLock(plain)
		}
		locks = append(locks, l)
	}
	return locks, nil
}

// removeStaleLocks removes the locks of writers that died (not refreshed for LockStale)
// and locks that cannot be read at all: GC ignores them anyway.
func (g *gcRun) removeStaleLocks(ctx context.Context) error {
	now := g.opts.Now()
	for _, l := range g.locks {
		stale := l.obj != nil && now.Sub(l.obj.Refreshed) > g.opts.LockStale
		if !stale && !errors.Is(l.err, ErrDamaged) {
			continue
		}
		if err := g.r.be.Remove(ctx, Handle{Type: LockFile, Name: l.name}); err != nil && !IsNotExist(err) {
			return fmt.Errorf("remove stale writer lock %s: %w", l.name, err)
		}
	}
	return nil
}
