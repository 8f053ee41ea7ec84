// Package scope owns folder grants and every host-side file access of the runtime: each grant
// is opened once as an os.Root and all paths resolve and open through it, never by joining host
// paths. It must never follow a path out of a grant, write to a read-only grant or to uploads,
// or write through a hard-linked or non-regular file.
package scope
