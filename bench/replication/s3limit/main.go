// Command s3limit measures what one S3 server can take, as the limit a replication row is judged
// against: objects PUT from bytes already in memory, or copied server-side (CopyObject), at a
// given concurrency, one object per line of -keys. It prints {"seconds": ...} on stdout.
//
// It is written in Go with minio-go (what mc is built on) so that the client's own CPU per
// request is small next to the server's: on two shared cores, a Python client would measure
// itself, not the server. Benchmark-only: paraflow never runs it.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

func main() {
	endpoint := flag.String("endpoint", "", "host:port of the server (plain http)")
	op := flag.String("op", "put", "put: bytes from memory; copy: CopyObject from -src-bucket")
	srcBucket := flag.String("src-bucket", "", "the bucket copied from (copy)")
	dstBucket := flag.String("dst-bucket", "", "the bucket written to")
	size := flag.Int64("size", 0, "bytes per object (put)")
	concurrency := flag.Int("concurrency", 16, "requests in flight")
	keysFile := flag.String("keys", "", "a file of the object keys, one per line")
	single := flag.Bool("single", false, "put: one PUT per object, never multipart (what rclone does below 200 MiB)")
	flag.Parse()
	client, err := minio.New(*endpoint, &minio.Options{
		Creds: credentials.NewStaticV4(os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), ""),
	})
	if err != nil {
		fail(err)
	}
	listed, err := os.ReadFile(*keysFile)
	if err != nil {
		fail(err)
	}
	keys := strings.Split(strings.TrimSuffix(string(listed), "\n"), "\n")
	payload := make([]byte, *size)
	if _, err := rand.Read(payload); err != nil {
		fail(err)
	}
	one := func(ctx context.Context, key string) error {
		if *op == "copy" {
			_, err := client.CopyObject(ctx,
				minio.CopyDestOptions{Bucket: *dstBucket, Object: key},
				minio.CopySrcOptions{Bucket: *srcBucket, Object: key})
			return err
		}
		_, err := client.PutObject(ctx, *dstBucket, key, bytes.NewReader(payload), *size,
			minio.PutObjectOptions{ContentType: "application/octet-stream", DisableMultipart: *single})
		return err
	}
	work := make(chan string)
	errs := make(chan error, *concurrency)
	var wg sync.WaitGroup
	started := time.Now()
	for range *concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for key := range work {
				if err := one(context.Background(), key); err != nil {
					errs <- fmt.Errorf("%s: %w", key, err)
					return
				}
			}
		}()
	}
	for _, key := range keys {
		select {
		case err := <-errs:
			fail(err)
		case work <- key:
		}
	}
	close(work)
	wg.Wait()
	seconds := time.Since(started).Seconds()
	select {
	case err := <-errs:
		fail(err)
	default:
	}
	if err := json.NewEncoder(os.Stdout).Encode(map[string]float64{"seconds": seconds}); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "s3limit:", err)
	os.Exit(1)
}
