//go:build unix

package scope

import (
	"io/fs"
	"syscall"
)

// openNonblock keeps open(2) from blocking on a FIFO or device swapped in after a check; the
// opened file is then refused by fstat.
const openNonblock = syscall.O_NONBLOCK

// openDirectory makes opening anything but a directory fail.
const openDirectory = syscall.O_DIRECTORY

// nlink is the number of hard links of the file fi describes.
func nlink(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}
