// testbin: the real node's pause (sandbox) image and its test workload, one static binary.
//
//	testbin                      pause: block until SIGTERM/SIGINT (the pod sandbox's process)
//	testbin serve PORT [FILE]    HTTP on :PORT answering "hello from <hostname>"; on SIGTERM
//	                             append "SIGTERM" to FILE (a hostPath the test reads), exit 0
//	testbin get URL              print URL's body (exit 1 on error): pod-to-pod, Service traffic
//	testbin echo WORDS...        print WORDS (for `kubectl exec`)
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	args := os.Args[1:]
	if len(args) == 0 {
		waitForSignal()
		return
	}
	switch args[0] {
	case "serve":
		serve(args[1:])
	case "get":
		get(args[1:])
	case "echo":
		fmt.Println(strings.Join(args[1:], " "))
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n", args[0])
		os.Exit(2)
	}
}

func waitForSignal() os.Signal {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	return <-signals
}

func serve(args []string) {
	if len(args) < 1 {
		fmt.Fprintln(os.Stderr, "usage: testbin serve PORT [SIGNAL_FILE]")
		os.Exit(2)
	}
	hostname, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", hostname)
	})
	go func() {
		if err := http.ListenAndServe(":"+args[0], nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}()
	fmt.Printf("serving on :%s\n", args[0])
	received := waitForSignal()
	fmt.Printf("%s received\n", received)
	if len(args) > 1 {
		f, err := os.OpenFile(args[1], os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Fprintf(f, "%s %s\n", unixName(received), hostname)
		f.Close()
	}
}

func unixName(s os.Signal) string {
	if s == syscall.SIGTERM {
		return "SIGTERM"
	}
	return "SIGINT"
}

func get(args []string) {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: testbin get URL")
		os.Exit(2)
	}
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
		os.Exit(1)
	}
	if resp.StatusCode != http.StatusOK {
		os.Exit(1)
	}
}
