package state

import (
	"encoding/binary"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// open opens a database in a new temporary directory, closed when the test ends.
func open(t testing.TB) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "state.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func reopen(t testing.TB, db *DB) *DB {
	t.Helper()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db2, err := Open(db.Path(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db2.Close() })
	return db2
}

func TestOpenLocked(t *testing.T) {
	db := open(t)
	_, err := Open(db.Path(), Options{Timeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: err = %v, want ErrLocked", err)
	}
	for _, want := range []string{db.Path(), "in use by another process", "--data-dir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// Once the first is closed, the file opens.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db2, err := Open(db.Path(), Options{Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	db2.Close()
}

func TestSchemaVersion(t *testing.T) {
	db := open(t)
	path := db.Path()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	bdb, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Update(func(tx *bbolt.Tx) error {
		if got := binary.BigEndian.Uint64(tx.Bucket(bucketMeta).Get(keySchema)); got != SchemaVersion {
			t.Errorf("stored schema version = %d, want %d", got, SchemaVersion)
		}
		return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint64(nil, SchemaVersion+1))
	}); err != nil {
		t.Fatal(err)
	}
	bdb.Close()
	_, err = Open(path, Options{})
	if err == nil {
		t.Fatal("Open of a database with a newer schema succeeded")
	}
	if !strings.Contains(err.Error(), "schema version is 2") {
		t.Fatalf("error %q does not name the schema version", err)
	}
	// The refused database was closed: it is not left locked.
	bdb, err = bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("database left locked after a refused Open: %v", err)
	}
	bdb.Close()
}

func TestClosed(t *testing.T) {
	db := open(t)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := db.Enqueue(OutboxMsg{Subject: "a"}); err == nil {
		t.Fatal("Enqueue after Close succeeded")
	}
}
