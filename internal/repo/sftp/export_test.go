package sftp

// Dials returns how many connections b has made, the first included.
func (b *Backend) Dials() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dials
}
