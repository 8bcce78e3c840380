//go:build !unix

package embedded

// Lock does nothing where there is no flock: one owner per data directory is then the user's to
// keep (the project runs on Linux; this keeps other systems building).
func Lock(dir string) (unlock func(), err error) { return func() {}, nil }
