// Command grpc_go_call makes gRPC calls through a real grpc-go client, the
// client library of the kubelet and crictl, all on one connection.
//
// Usage: grpc_go_call SOCKET AUTHORITY_MODE < CALLS
//
// AUTHORITY_MODE is "path" (the raw socket path, as the kubelet and crictl
// before 1.31 send it) or "localhost" (as they send it since). CALLS holds
// one call per line, "METHOD REQUEST_HEX"; a line "---" ends a batch. The
// calls of a batch run at once, batches one after another, every call on the
// same connection, each with its own deadline (so grpc-timeout differs from
// call to call, as the kubelet's do). Prints one JSON object per call, in
// input order: {"code": "OK"|..., "details": str, "response_hex": str}. The
// messages are raw protobuf bytes, so no generated stubs are needed.
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
)

// rawCodec passes messages through as the bytes they are.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

var _ encoding.Codec = rawCodec{}

type call struct {
	method  string
	request []byte
}

type outcome struct {
	Code        string `json:"code"`
	Details     string `json:"details"`
	ResponseHex string `json:"response_hex"`
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: grpc_go_call SOCKET path|localhost < CALLS")
		os.Exit(2)
	}
	socket, mode := os.Args[1], os.Args[2]
	opts := []grpc.DialOption{
		grpc.WithInsecure(),
		grpc.WithBlock(),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", addr)
		}),
		// The kubelet's receive cap.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16 * 1024 * 1024)),
	}
	switch mode {
	case "path":
	case "localhost":
		opts = append(opts, grpc.WithAuthority("localhost"))
	default:
		fmt.Fprintf(os.Stderr, "unknown authority mode %q\n", mode)
		os.Exit(2)
	}

	var batches [][]call
	var batch []call
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	for in.Scan() {
		line := strings.TrimSpace(in.Text())
		if line == "" {
			continue
		}
		if line == "---" {
			batches = append(batches, batch)
			batch = nil
			continue
		}
		fields := strings.Fields(line)
		request := []byte{}
		if len(fields) == 2 {
			var err error
			if request, err = hex.DecodeString(fields[1]); err != nil {
				fmt.Fprintf(os.Stderr, "bad hex: %v\n", err)
				os.Exit(2)
			}
		}
		batch = append(batch, call{method: fields[0], request: request})
	}
	if err := in.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "reading calls: %v\n", err)
		os.Exit(2)
	}
	batches = append(batches, batch)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	conn, err := grpc.DialContext(ctx, socket, opts...)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "dial %s: %v\n", socket, err)
		os.Exit(1)
	}
	defer conn.Close()

	out := json.NewEncoder(os.Stdout)
	n := 0
	for _, b := range batches {
		results := make([]outcome, len(b))
		var wg sync.WaitGroup
		for i, c := range b {
			wg.Add(1)
			timeout := time.Duration(60+n+i) * time.Second
			go func(i int, c call) {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				defer cancel()
				var response []byte
				err := conn.Invoke(ctx, c.method, &c.request, &response, grpc.ForceCodec(rawCodec{}))
				s := status.Convert(err)
				results[i] = outcome{s.Code().String(), s.Message(), hex.EncodeToString(response)}
			}(i, c)
		}
		wg.Wait()
		n += len(b)
		for _, r := range results {
			if err := out.Encode(r); err != nil {
				os.Exit(1)
			}
		}
	}
}
