// The etcd server, built from the go.etcd.io/etcd/server/v3 module at the version go.mod pins
// (scripts/real-cluster build): the same entry point as the upstream etcd binary.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
