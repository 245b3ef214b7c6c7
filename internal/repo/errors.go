package repo

import "errors"

// Sentinel errors, checked with errors.Is.
var (
	// ErrWrongPassword is returned by Open when no key of the repository opens with the
	// password given; the error returned wraps it and says how many keys were tried.
	ErrWrongPassword = errors.New("wrong password or key file")
	// ErrNoRepository is returned by Open when the backend has no repository config.
	ErrNoRepository = errors.New("no repository")
	// ErrAlreadyExists is returned by Init when the backend already holds a repository.
	ErrAlreadyExists = errors.New("repository already exists")
	// ErrDamaged is wrapped by errors about stored data that fails authentication, does not
	// decode, or whose content does not match its id. The error text names the object.
	ErrDamaged = errors.New("repository data damaged")
	// ErrAppendOnly is wrapped by the error of anything that would delete or overwrite an
	// object of a repository opened with Options.AppendOnly (prune, removing a snapshot or
	// a recovery point, a format upgrade) and of a backend call the guard refuses. Such
	// errors are marked brr.Permanent: retrying cannot change the configuration.
	ErrAppendOnly = errors.New("repository is append_only")
)

// ErrNotInIndex is wrapped by LoadBlob's error for a blob the index does not know.
var ErrNotInIndex = errors.New("blob not in index")
