package restorer

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/fsio"
	"github.com/brr-dev/brr/internal/repo"
	"golang.org/x/sys/unix"
)

// A restore run for a job (Options.Job) may be stopped midway: the worker drained on
// SIGTERM, or died, and the job comes back, maybe to another worker. Its next attempt
// must not trip over the files the first one wrote, which the restore without Overwrite
// refuses to replace like any other file in the way. So a restore for a job first
// creates a marker in the target, named after the job (markerName), and removes it when
// it succeeds. An attempt that finds its job's marker resumes:
//
//   - a file whose type, size, mode, mtime (and owner, as root) are exactly the
//     snapshot's was restored by an earlier attempt, which set them all before renaming
//     the file to its name: it is kept as it is and counted as restored; a symlink to the
//     snapshot's target, or a hard link of the right file, too;
//   - but only when every earlier attempt ran since the machine last booted (the marker
//     holds each attempt's boot id): a restore does not sync a file before its rename,
//     so after a crash of the system a file may have its name, size and mtime and not
//     its data. Such files, ours by the marker and their metadata, are written again;
//   - the temporary files of the earlier attempts are removed: the marker holds their
//     prefixes, one per line;
//   - anything else in the way fails, as without a marker, unless Overwrite.
//
// Without a marker, nothing in the target is taken for restored.

// resumeState is what Run learns from the marker.
type resumeState struct {
	on     bool     // the marker was there: an earlier attempt ran
	booted bool     // and one of them ran before the system last booted, or may have
	temps  []string // the temporary-name prefixes of the earlier attempts
	marker devIno   // the marker this attempt created or found
}

// markerName is the name of job's marker in the target: ".brr-restore-" and the job id,
// or a hash of it when it is no plain name (a job id is one, see brr.ValidateID).
func markerName(job string) string {
	plain := len(job) <= 128
	for _, c := range job {
		plain = plain && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_')
	}
	if plain {
		return tempBase + job
	}
	sum := sha256.Sum256([]byte(job))
	return tempBase + "job-" + hex.EncodeToString(sum[:16])
}

// Marker is the name of the marker the restore keeps in the target while its job may
// come back, "" when it runs for no job. Run removes it when the restore succeeds; after
// a failure it stays, so that a retry of the job resumes.
func (rs *Restorer) Marker() string {
	if rs.job == "" {
		return ""
	}
	return markerName(rs.job)
}

// maxMarker bounds what is read of a marker: a line per attempt.
const maxMarker = 64 << 10

// mark creates the job's marker in the target, or finds the one an earlier attempt left
// and reads it; it appends this attempt's prefix of temporary names.
func (rs *Restorer) mark() error {
	name := markerName(rs.job)
	fd, err := rs.dst.open(name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_APPEND, 0o600)
	if errors.Is(err, fs.ErrExist) {
		rs.resume.on = true
		// O_NONBLOCK: a fifo in its place must not hang the restore (it fails below).
		fd, err = rs.dst.open(name, unix.O_RDWR|unix.O_APPEND|unix.O_NONBLOCK, 0)
	}
	if err != nil {
		return fmt.Errorf("create the restore's marker %s in the target: %w", name, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat the restore's marker %s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return brr.Permanent(fmt.Errorf("%s in the target, where the restore keeps its marker, is not a file; remove it", name))
	}
	rs.resume.marker = devIno{uint64(st.Dev), st.Ino}
	if rs.resume.on {
		b := make([]byte, min(st.Size, maxMarker))
		n, err := unix.Pread(fd, b, 0)
		if err != nil {
			return fmt.Errorf("read the restore's marker %s: %w", name, err)
		}
		attempts, sameBoot := 0, 0
		for _, line := range strings.Split(string(b[:max(n, 0)]), "\n") {
			if validTempPrefix(line) {
				rs.resume.temps = append(rs.resume.temps, line)
				attempts++
			}
			if id, ok := strings.CutPrefix(line, bootLine); ok && id == bootID() && id != "" {
				sameBoot++
			}
		}
		// A marker of an older brr has no boot ids: its attempts may have run before.
		rs.resume.booted = sameBoot < attempts
	}
	if _, err := unix.Write(fd, []byte(rs.tempPrefix+"\n"+bootLine+bootID()+"\n")); err != nil {
		return fmt.Errorf("write the restore's marker %s: %w", name, err)
	}
	return nil
}

// bootLine begins the line of the marker that holds an attempt's boot id.
const bootLine = "boot "

// bootID returns the id the kernel gave the current boot, "" when it cannot be read.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// unmark removes the marker, if it is still the one mark saw.
func (rs *Restorer) unmark() {
	name := markerName(rs.job)
	if st, err := rs.dst.lstat(name); err == nil && (devIno{uint64(st.Dev), st.Ino}) == rs.resume.marker {
		_ = rs.dst.remove(name)
	}
}

// validTempPrefix says whether p is a prefix of temporary names as New makes them: 12
// hex digits and "-". Nothing else is removed.
func validTempPrefix(p string) bool {
	if len(p) != 13 || p[12] != '-' {
		return false
	}
	_, err := hex.DecodeString(p[:12])
	return err == nil
}

// removeTemps removes the temporary files the earlier attempts left in the directory rel.
// One that cannot be removed stays: it has a hidden name and is in nobody's way.
func (rs *Restorer) removeTemps(rel string) {
	if len(rs.resume.temps) == 0 {
		return
	}
	names, err := rs.dst.readDir(rel)
	if err != nil {
		return
	}
	marker := markerName(rs.job)
	for _, name := range names {
		if !strings.HasPrefix(name, tempBase) || name == marker {
			continue
		}
		for _, p := range rs.resume.temps {
			if strings.HasPrefix(name, tempBase+p) {
				_ = rs.dst.remove(path.Join(rel, name))
				break
			}
		}
	}
}

// skipRestored returns the files that are still to write: when resuming, those an
// earlier attempt restored (sameFile) are counted as restored and left out.
func (rs *Restorer) skipRestored(files []entry) []entry {
	if !rs.resume.on {
		return files
	}
	var out []entry
	for _, f := range files {
		if !rs.parentFailed(f.rel) && rs.dirFlags(path.Dir(f.rel))&dirFresh == 0 {
			if st, err := rs.dst.lstat(f.rel); err == nil && rs.sameFile(&st, f.node) {
				if rs.resume.booted {
					// Ours, but its data may not have reached the disk: write it again.
					_ = rs.dst.remove(f.rel)
					out = append(out, f)
					continue
				}
				rs.restored.Store(f.rel, struct{}{})
				rs.files.Add(1)
				rs.bytes.Add(f.node.Size)
				rs.doneBytes.Add(f.node.Size)
				rs.kept.Add(1)
				continue
			}
		}
		out = append(out, f)
	}
	return out
}

// sameFile says whether st is the file n as a restore leaves it: a regular file with
// n's size, mode bits and mtime, and n's owner when the restore sets owners.
func (rs *Restorer) sameFile(st *unix.Stat_t, n *repo.Node) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFREG &&
		st.Size == n.Size &&
		st.Mode&0o7777 == fsio.UnixPerm(n.Mode) &&
		st.Mtim.Nano() == n.ModTime.UnixNano() &&
		(!rs.chown || st.Uid == n.UID && st.Gid == n.GID)
}

// restoredBefore says whether, resuming, the symlink s is in the target as the snapshot
// has it.
func (rs *Restorer) restoredBefore(s entry) bool {
	if !rs.resume.on {
		return false
	}
	st, err := rs.dst.lstat(s.rel)
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return false
	}
	to, err := rs.dst.readlink(s.rel, st.Size)
	if err != nil || to != s.node.LinkTarget {
		return false
	}
	rs.kept.Add(1)
	return true
}

// linkedBefore says whether, resuming, the hard link h is in the target: the same inode
// as its leader.
func (rs *Restorer) linkedBefore(h hardlink) bool {
	if !rs.resume.on {
		return false
	}
	st, err := rs.dst.lstat(h.rel)
	if err != nil {
		return false
	}
	if rs.resume.booted {
		// A link to the file skipRestored removed and wrote again: link it again.
		if rs.sameFile(&st, h.node) {
			_ = rs.dst.remove(h.rel)
		}
		return false
	}
	lst, err := rs.dst.lstat(h.leader)
	if err != nil || st.Dev != lst.Dev || st.Ino != lst.Ino {
		return false
	}
	rs.kept.Add(1)
	return true
}

// Resume makes rs carry on after prev, a restore into the same target that failed in
// this process (the job falls back to a replica): what prev restored counts as restored
// here, and is left out of the plan it returns. A restore that comes back in another
// process resumes by its job's marker instead.
func (rs *Restorer) Resume(prev *Restorer, pl *Plan) *Plan {
	prev.restored.Range(func(k, v any) bool {
		rs.restored.Store(k, v)
		return true
	})
	rs.files.Store(prev.files.Load())
	rs.symlinks.Store(prev.symlinks.Load())
	rs.bytes.Store(prev.bytes.Load())
	rs.kept.Store(prev.kept.Load())
	done := func(rel string) bool {
		_, ok := prev.restored.Load(rel)
		return ok
	}
	out := &Plan{dirs: pl.dirs}
	for _, f := range pl.files {
		if !done(f.rel) {
			out.files = append(out.files, f)
			out.bytes += f.node.Size
		}
	}
	for _, s := range pl.symlinks {
		if !done(s.rel) {
			out.symlinks = append(out.symlinks, s)
		}
	}
	for _, h := range pl.hardlinks {
		if !done(h.rel) {
			out.hardlinks = append(out.hardlinks, h)
		}
	}
	return out
}
