//go:build unix && !linux && !darwin && !dragonfly && !freebsd && !netbsd && !openbsd

package rawconn

// queued reports that the queued byte count is unknown here, so reads take
// the caller's full size.
func queued(fd int) (int, bool) { return 0, false }
