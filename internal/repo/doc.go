// Package repo is brr's repository format: it turns files into content-defined chunks,
// stores them deduplicated, compressed and encrypted in pack files on a Backend, keeps the
// index that says which blob lives in which pack, and records snapshots as the single
// commit point of a backup. Everything a backend ever sees is ciphertext named by a hash of
// that ciphertext, so a repository on someone else's disk or object store reveals neither
// content nor chunk boundaries. The format is built so that a crash at any moment leaves a
// repository that checks clean, and so that several writers can add to one repository at
// once without coordinating.
package repo
