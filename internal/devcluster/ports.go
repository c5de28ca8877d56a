package devcluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
)

// Nomad hands tasks ports from 20000–32000. Clusters on one machine must not
// hand out the same ones, so each takes a block under an exclusive file lock,
// held until Stop (or until the process dies: the kernel drops the lock).
const (
	dynamicPortBase  = 20000
	dynamicBlockSize = 500
	dynamicBlocks    = 24
)

type portBlock struct {
	min, max int
	lock     *os.File
}

func lockPortBlock(root string) (*portBlock, error) {
	for i := range dynamicBlocks {
		path := filepath.Join(root, fmt.Sprintf("ports-%02d.lock", i))
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open port block lock: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			_ = f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				continue
			}
			return nil, fmt.Errorf("lock port block: %w", err)
		}
		lo := dynamicPortBase + i*dynamicBlockSize
		return &portBlock{min: lo, max: lo + dynamicBlockSize - 1, lock: f}, nil
	}
	return nil, fmt.Errorf("all %d dynamic port blocks are in use by other clusters", dynamicBlocks)
}

func (b *portBlock) release() { _ = b.lock.Close() }

// freePorts asks the kernel for n distinct free loopback ports. The kernel
// picks them from its ephemeral range, above Nomad's dynamic range.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer func() { _ = l.Close() }()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
