// Command keepup is the keepup agent runtime's CLI; the commands live in internal/cli.
package main

import (
	"os"

	"github.com/keepup/keepup/internal/cli"
)

func main() { os.Exit(cli.Main(cli.NewState())) }
