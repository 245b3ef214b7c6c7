package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// CachedFile is what the backup engine knew of a file when it last read it: when its
// size, times and inode are unchanged, Content (the ids of its chunks) is reused and the
// file is not read again.
type CachedFile struct {
	Size         int64
	ModTimeNS    int64
	ChangeTimeNS int64
	Inode        uint64
	Content      [][32]byte
}

// LoadFileCache returns the file cache of scope (a repository id and a source path),
// keyed by path relative to the source; an unknown scope gives an empty map.
func (db *DB) LoadFileCache(scope string) (map[string]CachedFile, error) {
	var files map[string]CachedFile
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketFileCache).Bucket([]byte(scope))
		if b == nil {
			files = map[string]CachedFile{}
			return nil
		}
		files = make(map[string]CachedFile, b.Stats().KeyN)
		return b.ForEach(func(k, v []byte) error {
			f, err := decodeCachedFile(v)
			if err != nil {
				return fmt.Errorf("decode entry %q: %w", k, err)
			}
			files[string(k)] = f
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load file cache %q: %w", scope, err)
	}
	return files, nil
}

// fileCacheBatch is how many file cache entries one transaction writes. bbolt splits
// nodes only when a transaction commits, so a single transaction that inserts a million
// keys keeps them in one node and moves its tail on every insert: quadratic. Entries are
// independent, so a cache updated batch by batch is valid after each one.
const fileCacheBatch = 20000

// UpdateFileCache stores put and removes del in the file cache of scope, in sorted order
// and in transactions of at most fileCacheBatch entries.
func (db *DB) UpdateFileCache(scope string, put map[string]CachedFile, del []string) error {
	if scope == "" {
		return errors.New("update file cache: empty scope")
	}
	if len(put) == 0 && len(del) == 0 {
		return nil
	}
	dels := slices.Clone(del)
	slices.Sort(dels)
	puts := slices.Sorted(maps.Keys(put))
	var buf []byte
	for len(dels) > 0 || len(puts) > 0 {
		nd := min(len(dels), fileCacheBatch)
		np := min(len(puts), fileCacheBatch-nd)
		err := db.bolt.Update(func(tx *bbolt.Tx) error {
			b, err := tx.Bucket(bucketFileCache).CreateBucketIfNotExists([]byte(scope))
			if err != nil {
				return err
			}
			// Keys come sorted: fuller pages.
			b.FillPercent = 0.9
			for _, p := range dels[:nd] {
				if p == "" {
					continue
				}
				if err := b.Delete([]byte(p)); err != nil {
					return err
				}
			}
			for _, p := range puts[:np] {
				if p == "" {
					return errors.New("entry with an empty path")
				}
				buf = encodeCachedFile(buf[:0], put[p])
				// bbolt keeps the value until commit: give it its own copy.
				if err := b.Put([]byte(p), append([]byte(nil), buf...)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("update file cache %q: %w", scope, err)
		}
		dels, puts = dels[nd:], puts[np:]
	}
	return nil
}

// DropFileCache removes the whole file cache of scope.
func (db *DB) DropFileCache(scope string) error {
	err := db.bolt.Update(func(tx *bbolt.Tx) error {
		err := tx.Bucket(bucketFileCache).DeleteBucket([]byte(scope))
		if errors.Is(err, berrors.ErrBucketNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("drop file cache %q: %w", scope, err)
	}
	return nil
}

// encodeCachedFile appends f as: uvarint size, varint mtime, varint ctime, uvarint inode,
// uvarint count, then count 32-byte ids.
func encodeCachedFile(b []byte, f CachedFile) []byte {
	b = binary.AppendUvarint(b, uint64(f.Size))
	b = binary.AppendVarint(b, f.ModTimeNS)
	b = binary.AppendVarint(b, f.ChangeTimeNS)
	b = binary.AppendUvarint(b, f.Inode)
	b = binary.AppendUvarint(b, uint64(len(f.Content)))
	for i := range f.Content {
		b = append(b, f.Content[i][:]...)
	}
	return b
}

var errTruncated = errors.New("truncated")

func decodeCachedFile(b []byte) (CachedFile, error) {
	var f CachedFile
	size, n := binary.Uvarint(b)
	if n <= 0 {
		return f, errTruncated
	}
	b = b[n:]
	if f.ModTimeNS, n = binary.Varint(b); n <= 0 {
		return f, errTruncated
	}
	b = b[n:]
	if f.ChangeTimeNS, n = binary.Varint(b); n <= 0 {
		return f, errTruncated
	}
	b = b[n:]
	if f.Inode, n = binary.Uvarint(b); n <= 0 {
		return f, errTruncated
	}
	b = b[n:]
	count, n := binary.Uvarint(b)
	if n <= 0 {
		return f, errTruncated
	}
	b = b[n:]
	if count != uint64(len(b))/32 || len(b)%32 != 0 {
		return f, fmt.Errorf("%d bytes of content ids, want %d", len(b), count*32)
	}
	f.Size = int64(size)
	if count > 0 {
		f.Content = make([][32]byte, count)
		for i := range f.Content {
			copy(f.Content[i][:], b[i*32:])
		}
	}
	return f, nil
}
