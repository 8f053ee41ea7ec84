//go:build !unix

package scope

import "io/fs"

const (
	openNonblock  = 0
	openDirectory = 0
)

func nlink(fs.FileInfo) uint64 { return 1 }
