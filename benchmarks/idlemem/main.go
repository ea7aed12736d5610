// Command idlemem measures what an idle network connection costs in memory,
// side by side for the ways a Go program can hold one: a goroutine parked in
// syscall.RawConn.Read holding nothing (the floor of the
// goroutine-per-connection model), a 32 KiB bufio.Reader, crypto/tls, gRPC,
// and readyconn's layers.
//
// For each mode it opens N connections over TCP loopback, client and server
// in the same process, exchanges one message on each so that every lazily
// allocated buffer exists, and leaves a reader blocked on every end. Then it
// collects garbage twice and reports, per connection, the Go heap and the
// goroutine stacks in use (runtime.MemStats HeapInuse and StackInuse, as the
// difference from a baseline taken before the first connection was opened),
// their sum, the bytes the mode's readyconn pool still has handed out (0 is
// the claim), and the ratio to the floor. A connection counts both of its
// ends: the client side and the server side (for gRPC, a ClientConn and its
// server transport).
//
// Each mode runs in a fresh child process (the same executable, re-run), so
// that no mode inherits another's goroutine structures, stack caches or heap
// spans: the Go runtime never frees a goroutine's descriptor and keeps
// free stacks and spans for reuse, so the modes measured after the first
// would look cheaper than they are in one process. -inprocess turns that off.
//
// It also measures how the cost per connection changes with N (-scaling);
// a flat row means the cost is per connection and not an amortised constant.
//
// The default run (N = 2000, every mode, scaling at N = 500, 1000, 2000)
// needs about 20 s of CPU and 4,100 open files; it ends well within a minute
// on two idle cores.
//
// Usage:
//
//	go run ./benchmarks/idlemem [-n 2000] [-modes floor,bufio,…] [-json]
//		[-svg FILE] [-png FILE] [-scaling 500,1000,2000] [-scaling-modes …] [-inprocess]
//
// The exit status is 0 when every measurement succeeded, 1 when one failed
// (the others are still reported), and 2 for bad flags or an open-file limit
// too low for N.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// childEnv carries a child request from the parent process to its child.
const childEnv = "IDLEMEM_CHILD"

// spareFDs is the number of file descriptors kept free beyond the
// connections: stdio, listeners, the runtime's poller, gRPC internals.
const spareFDs = 64

// defaultScalingModes are the modes the scaling table covers by default.
var defaultScalingModes = []string{"floor", "bufio", "readyreader", "grpc-plaintext", "grpc-readyconn"}

type config struct {
	n            int
	modes        []string
	json         bool
	svg, png     string
	scaling      []int
	scalingModes []string
	inProcess    bool
}

// childRequest is what the parent asks a child process to measure.
type childRequest struct {
	Mode     string `json:"mode"`
	N        int    `json:"n"`
	Progress bool   `json:"progress"`
}

func main() {
	if req := os.Getenv(childEnv); req != "" {
		os.Exit(childMain(req, os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole command: parse flags, check preconditions, measure every
// mode and report. It returns the exit status: 0 on success, 1 if a mode
// failed, 2 for bad usage or unmet preconditions.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "idlemem: %v\n", err)
		return 2
	}
	if err := checkOpenFiles(cfg, stderr); err != nil {
		fmt.Fprintf(stderr, "idlemem: %v\n", err)
		return 2
	}

	measureOne := func(name string, n int) (result, error) {
		if cfg.inProcess {
			m, _ := findMode(name)
			var progress func(func() int64) func()
			if isTerminal(os.Stderr) && stderr == io.Writer(os.Stderr) {
				progress = progressTo(stderr, name, n)
			}
			return measure(m, n, progress)
		}
		return measureInChild(name, n, stderr)
	}

	rep := report{
		Go:        runtime.Version(),
		GOOS:      runtime.GOOS,
		GOARCH:    runtime.GOARCH,
		CPUs:      runtime.NumCPU(),
		N:         cfg.n,
		Date:      time.Now().UTC().Format(time.RFC3339),
		Isolation: "one child process per mode and N",
	}
	if cfg.inProcess {
		rep.Isolation = "all modes in one process"
	}
	failed := false
	for _, name := range cfg.modes {
		r, err := measureOne(name, cfg.n)
		if err != nil {
			fmt.Fprintf(stderr, "idlemem: %v\n", err)
			rep.Errors = append(rep.Errors, err.Error())
			failed = true
			continue
		}
		rep.Results = append(rep.Results, r)
	}
	rep.setRatios()

	for _, name := range cfg.scalingModes {
		s := scalingRow{Mode: name}
		for _, n := range cfg.scaling {
			var r result
			var err error
			if i := rep.find(name); n == cfg.n && i >= 0 {
				r = rep.Results[i]
			} else if n == cfg.n {
				continue // the main run of this mode failed and was reported
			} else if r, err = measureOne(name, n); err != nil {
				fmt.Fprintf(stderr, "idlemem: %v\n", err)
				rep.Errors = append(rep.Errors, err.Error())
				failed = true
				continue
			}
			s.Points = append(s.Points, scalingPoint{N: n, TotalPerConn: r.TotalPerConn, HeapPerConn: r.HeapPerConn, StackPerConn: r.StackPerConn})
		}
		rep.Scaling = append(rep.Scaling, s)
	}

	if cfg.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "idlemem: %v\n", err)
			return 1
		}
	} else {
		rep.writeTable(stdout)
	}
	chartNoted := false
	for _, c := range []struct{ file, kind string }{{cfg.svg, "svg"}, {cfg.png, "png"}} {
		if c.file == "" {
			continue
		}
		if err := rep.writeChart(c.file, c.kind); err != nil {
			fmt.Fprintf(stderr, "idlemem: chart: %v\n", err)
			failed = true
		} else if !cfg.json {
			if !chartNoted {
				fmt.Fprintln(stdout)
				chartNoted = true
			}
			fmt.Fprintf(stdout, "chart written to %s\n", c.file)
		}
	}
	if failed {
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("idlemem", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 2000, "connections to open per mode (each uses 2 file descriptors)")
	modesFlag := fs.String("modes", strings.Join(modeNames(), ","), "comma-separated modes to measure; floor is always measured, as the reference for ratios")
	jsonOut := fs.Bool("json", false, "write machine-readable results to stdout instead of the tables")
	svg := fs.String("svg", "", "write a bar chart of KiB per connection per mode to this SVG file")
	png := fs.String("png", "", "write the same bar chart as a PNG image to this file")
	scaling := fs.String("scaling", "500,1000,2000", "comma-separated values of N for the scaling table (empty to skip it)")
	var defScaling []string
	for _, name := range defaultScalingModes {
		if _, ok := findMode(name); ok {
			defScaling = append(defScaling, name)
		}
	}
	scalingModes := fs.String("scaling-modes", strings.Join(defScaling, ","), "modes the scaling table covers (those not in -modes are skipped)")
	inProcess := fs.Bool("inprocess", false, "measure every mode in this process instead of a fresh child process each (less accurate)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: idlemem [flags]\n\nMeasures idle memory per connection for each mode. Modes:\n")
		for _, m := range modes {
			fmt.Fprintf(fs.Output(), "  %-15s %s\n", m.name, m.desc)
		}
		fmt.Fprintf(fs.Output(), "\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg := config{n: *n, json: *jsonOut, svg: *svg, png: *png, inProcess: *inProcess}
	if cfg.n <= 0 {
		return config{}, fmt.Errorf("-n must be positive, got %d", cfg.n)
	}
	selected, err := parseModes(*modesFlag)
	if err != nil {
		return config{}, err
	}
	if !slices.Contains(selected, modes[0].name) {
		selected = append([]string{modes[0].name}, selected...)
	}
	// Keep the table's order.
	for _, name := range modeNames() {
		if slices.Contains(selected, name) {
			cfg.modes = append(cfg.modes, name)
		}
	}
	for _, f := range strings.Split(*scaling, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil || v <= 0 {
			return config{}, fmt.Errorf("-scaling: %q is not a positive number", f)
		}
		if !slices.Contains(cfg.scaling, v) {
			cfg.scaling = append(cfg.scaling, v)
		}
	}
	slices.Sort(cfg.scaling)
	if len(cfg.scaling) > 0 {
		sm, err := parseModes(*scalingModes)
		if err != nil {
			return config{}, fmt.Errorf("-scaling-modes: %w", err)
		}
		for _, name := range cfg.modes {
			if slices.Contains(sm, name) {
				cfg.scalingModes = append(cfg.scalingModes, name)
			}
		}
	}
	return cfg, nil
}

// parseModes splits a comma-separated list of mode names and rejects the
// unknown ones.
func parseModes(list string) ([]string, error) {
	var out []string
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if _, ok := findMode(name); !ok {
			return nil, fmt.Errorf("unknown mode %q (known modes: %s)", name, strings.Join(modeNames(), ", "))
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no modes given (known modes: %s)", strings.Join(modeNames(), ", "))
	}
	return out, nil
}

// checkOpenFiles raises the open-file limit to the hard limit and checks
// that the largest N fits, so that the run does not fail halfway.
func checkOpenFiles(cfg config, stderr io.Writer) error {
	limit, err := raiseOpenFileLimit()
	if err != nil {
		if errors.Is(err, errNoLimit) {
			return nil
		}
		fmt.Fprintf(stderr, "idlemem: warning: cannot read the open-file limit: %v\n", err)
		return nil
	}
	maxN := cfg.n
	for _, n := range cfg.scaling {
		maxN = max(maxN, n)
	}
	fds := 0
	for _, name := range cfg.modes {
		m, _ := findMode(name)
		fds = max(fds, m.fdsPerConn)
	}
	need := uint64(maxN*fds + spareFDs)
	if need <= limit {
		return nil
	}
	fit := 0
	if limit > spareFDs {
		fit = int(limit-spareFDs) / fds
	}
	return fmt.Errorf("-n %d needs about %d open files (%d per connection for its two ends, plus %d spare), "+
		"but the open-file limit is %d even after raising the soft limit to the hard limit; at most %d connections fit.\n"+
		"Raise the hard limit (ulimit -Hn, /etc/security/limits.conf, launchctl limit maxfiles) or use a smaller -n / -scaling",
		maxN, need, fds, spareFDs, limit, fit)
}

// measureInChild runs one measurement in a fresh process: this executable,
// re-run with the request in the environment.
func measureInChild(name string, n int, stderr io.Writer) (result, error) {
	exe, err := os.Executable()
	if err != nil {
		return result{}, fmt.Errorf("mode %s: cannot find own executable to re-run: %w", name, err)
	}
	req, err := json.Marshal(childRequest{Mode: name, N: n, Progress: isTerminal(os.Stderr) && stderr == io.Writer(os.Stderr)})
	if err != nil {
		return result{}, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+string(req))
	cmd.Stderr = stderr
	out, err := cmd.Output()
	if err != nil {
		return result{}, fmt.Errorf("mode %s (N=%d): child process: %w", name, n, err)
	}
	var r result
	if err := json.Unmarshal(out, &r); err != nil {
		return result{}, fmt.Errorf("mode %s (N=%d): child process output: %w", name, n, err)
	}
	return r, nil
}

// childMain is the child side of measureInChild: it measures one mode and
// writes the result as JSON to stdout.
func childMain(reqJSON string, stdout, stderr io.Writer) int {
	var req childRequest
	if err := json.Unmarshal([]byte(reqJSON), &req); err != nil {
		fmt.Fprintf(stderr, "idlemem child: bad request %q: %v\n", reqJSON, err)
		return 2
	}
	m, ok := findMode(req.Mode)
	if !ok {
		fmt.Fprintf(stderr, "idlemem child: unknown mode %q\n", req.Mode)
		return 2
	}
	// The parent raised its limit, but Go restores the original soft
	// limit in child processes.
	_, _ = raiseOpenFileLimit()
	var progress func(func() int64) func()
	if req.Progress {
		progress = progressTo(stderr, req.Mode, req.N)
	}
	r, err := measure(m, req.N, progress)
	if err != nil {
		fmt.Fprintf(stderr, "idlemem child: %v\n", err)
		return 1
	}
	if err := json.NewEncoder(stdout).Encode(r); err != nil {
		fmt.Fprintf(stderr, "idlemem child: %v\n", err)
		return 1
	}
	return 0
}
