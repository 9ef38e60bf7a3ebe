// Command allreduce is the example's worker: rank r contributes the vector
// (r+1, r+1, ...); rank 0 gathers every vector over TCP, sums them and
// sends the sum back, so every rank ends with the same result.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"time"
)

func main() {
	rank := flag.Int("rank", 0, "this process's rank")
	world := flag.Int("world", 1, "number of ranks")
	master := flag.String("master", "127.0.0.1:29500", "rank 0's host:port")
	n := flag.Int("len", 8, "vector length")
	flag.Parse()

	vec := make([]float64, *n)
	for i := range vec {
		vec[i] = float64(*rank + 1)
	}
	var sum []float64
	var err error
	if *rank == 0 {
		sum, err = serve(*master, *world, vec)
	} else {
		sum, err = join(*master, vec)
	}
	if err != nil {
		log.Fatalf("rank %d: %v", *rank, err)
	}
	want := float64(*world * (*world + 1) / 2)
	for _, v := range sum {
		if v != want {
			fmt.Fprintf(os.Stderr, "rank %d: all-reduce gave %v, want %v everywhere\n", *rank, sum, want)
			os.Exit(1)
		}
	}
	fmt.Printf("rank %d: all-reduce OK: sum = %v\n", *rank, sum)
}

// serve is rank 0: accept world-1 peers, add their vectors, send the sum.
func serve(addr string, world int, vec []float64) ([]float64, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	sum := append([]float64(nil), vec...)
	var peers []net.Conn
	for len(peers) < world-1 {
		c, err := l.Accept()
		if err != nil {
			return nil, err
		}
		v, err := readVec(c, len(vec))
		if err != nil {
			return nil, err
		}
		for i := range sum {
			sum[i] += v[i]
		}
		peers = append(peers, c)
	}
	for _, c := range peers {
		if err := writeVec(c, sum); err != nil {
			return nil, err
		}
		c.Close()
	}
	return sum, nil
}

// join is every other rank: connect (rank 0 may not listen yet), send,
// receive the sum.
func join(addr string, vec []float64) ([]float64, error) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			defer c.Close()
			if err := writeVec(c, vec); err != nil {
				return nil, err
			}
			return readVec(c, len(vec))
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("reach rank 0 at %s: %w", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func writeVec(w io.Writer, v []float64) error { return binary.Write(w, binary.BigEndian, v) }

func readVec(r io.Reader, n int) ([]float64, error) {
	v := make([]float64, n)
	return v, binary.Read(r, binary.BigEndian, v)
}
