package repo

// SetTestHooks makes SaveBlob call afterClaim between claiming a blob and compressing it,
// and Flush call flushWaits when it is about to wait for blobs other SaveBlobs claimed.
// Set them before the Repository is used.
func SetTestHooks(r *Repository, afterClaim func(ID), flushWaits func()) {
	r.afterClaim = afterClaim
	r.flushWaits = flushWaits
}
