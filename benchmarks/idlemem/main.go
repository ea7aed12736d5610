// Command idlemem measures what an idle network connection costs in memory,
// side by side for the ways a Go program can hold one: a goroutine parked in
// syscall.RawConn.Read holding nothing (the floor of the
// goroutine-per-connection model), a 32 KiB bufio.Reader, crypto/tls, gRPC,
// and readyconn's layers.
//
// For each mode it opens N connections over TCP loopback, client and server
// in the same process, exchanges one message on each (-msg bytes each way,
// 100 B by default; for gRPC one health-check RPC) so that every lazily
// allocated buffer exists, and leaves a reader blocked on every end. Then it
// collects garbage twice and reports, per connection, the Go heap and the
// goroutine stacks in use (runtime.MemStats HeapInuse and StackInuse, as the
// difference from a baseline taken before the first connection was opened),
// their sum, the bytes the mode's readyconn pool still has handed out (0 is
// the claim), and the ratio to the floor. A connection counts both of its
// ends: the client side and the server side (for gRPC, a ClientConn and its
// server transport).
//
// # Isolation and the goroutine start size
//
// Each mode runs in a fresh child process (the same executable, re-run), so
// that no mode inherits another's goroutine structures, stack caches or heap
// spans: the Go runtime never frees a goroutine's descriptor and keeps
// free stacks and spans for reuse, so the modes measured after the first
// would look cheaper than they are in one process. -inprocess turns that off.
//
// Go also sizes new goroutines' stacks from the average stack the last
// collection saw (/gc/stack/starting-size:bytes): after a burst of TLS
// handshakes new goroutines start with 4 or 8 KiB, and the same code then
// measured 0.42x or 0.57x of crypto/tls depending on what ran before it in
// the process. So each child runs with GODEBUG=adaptivestackstart=0 (added
// to any GODEBUG already set): every goroutine starts with 2 KiB and grows
// only as far as its own work takes it. The "start B" column shows the start
// size each measurement saw; -adaptive-stack leaves the runtime's default on
// (measured here it changes the tls and alts rows' start size to 4096 and
// none of the figures).
//
// # What the goroutines do
//
// Each end of a non-gRPC mode has a reader goroutine that only reads: it
// calls the mode's read in a loop and does nothing else, so its stack holds
// what the read path needs. The handshake and the sends run on a setup
// goroutine of their own, which ends once the exchange is done. The
// goroutines column is therefore 2 for those modes (a reader per end). A
// gRPC client+server pair runs 8: on the client the HTTP/2 reader, the
// loopy writer and three callback serializers of the ClientConn (resolver,
// balancer, connectivity state); on the server the transport's reader, its
// loopy writer and its keepalive goroutine. Their number and their stacks
// are gRPC's, not the mode's.
//
// -setup-on-reader runs the handshake and the sends on the reader goroutine
// instead, as many programs are written. A goroutine's stack grows to the
// deepest call it makes and, when it parks, shrinks by half at a collection
// only while what it uses is under a quarter of it; a parked read path uses
// too much for that, so the stack a handshake grew stays for as long as the
// connection is idle, however many collections run (measured with 2, 4 and 8
// collections: the same figures). Measured (N = 2000, KiB per pair, stack
// part in parentheses, reader-only vs -setup-on-reader, 2026-12-02): floor
// 6.3 (4.0) vs 6.1 (4.0); readyreader 7.0 (4.0) vs 6.9 (4.2); framing 7.7
// (4.0) vs 11.5 (8.0); tls 27.2 (8.0) vs 35.4 (16.0); tlsconn 10.5 (4.0) vs
// 14.4 (8.0); alts 10.4 (4.1) vs 14.4 (8.0). The readyconn readers park
// within a 2 KiB stack; crypto/tls's read path alone grows past it. A
// server that parks its readers on the goroutine that did the handshake
// pays that difference per connection; one that reads on a goroutine of its
// own does not.
//
// # Traffic: -msg and -burst
//
// -msg sets the size of the exchange in the non-gRPC modes (e.g. -msg
// 64KiB): buffers that grow with traffic and never shrink show up then
// (crypto/tls: 27.2 KiB per pair after 100 B, 71.5 after 64 KiB; tlsconn
// 10.5 and 10.5, alts 10.4 and 10.4, readyreader 7.0 and 7.0; framing 7.7
// and 8.1, the slice vector its Writer keeps after a large frame). The
// floor, tls, tlsconn and alts ends read through a 64-byte application
// buffer whatever the size.
//
// gRPC modes are measured twice: after the one health-check RPC, and again
// after a burst of -burst bytes each way (1 MiB by default, 0 to skip) on
// every connection, one FullDuplexCall of the interop TestService
// (google.golang.org/grpc/interop/grpc_testing) in 64 KiB messages, each
// answered before the next is sent. Long-lived connections see bursts, and
// buffers that grow with them and stay (crypto/tls's record buffers) appear
// in the "burst" columns. The scaling table shows the first measurement only.
//
// # Progress and output
//
// Progress goes to stderr (-q silences it): a line before each measurement,
// "[k/n] mode N=…" with what follows it, and a line with its result after;
// on a terminal a live count of open connections in between. The tables (or
// -json) go to stdout.
//
// It also measures how the cost per connection changes with N (-scaling);
// a flat row means the cost is per connection and not an amortised constant.
//
// The default run (N = 2000, every mode, a 1 MiB burst through every gRPC
// connection, scaling at N = 500, 1000, 2000) needs about 2.5 minutes of CPU
// (measured on a busy 2-core VM), most of it the bursts, and 4,100 open
// files; -burst 0 brings it to about 40 s, and -burst 256KiB shows nearly
// the same growth (grpc-tls: 230 against 233 KiB) in a quarter of the time.
//
// Adding a mode is one entry in the modes table (modes.go) plus its
// endpoint constructor (an endFactory, for modes whose two ends read the
// same way) or its gRPC setup (a grpcMode: credentials, server and dial
// options, a listener wrapper).
//
// Usage:
//
//	go run ./benchmarks/idlemem [-n 2000] [-modes floor,bufio,…] [-msg 100]
//		[-burst 1MiB] [-setup-on-reader] [-adaptive-stack] [-json] [-q]
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

// pinStackStart is the GODEBUG setting each child runs with unless
// -adaptive-stack is given.
const pinStackStart = "adaptivestackstart=0"

// spareFDs is the number of file descriptors kept free beyond the
// connections: stdio, listeners, the runtime's poller, gRPC internals.
const spareFDs = 64

// defaultScalingModes are the modes the scaling table covers by default.
var defaultScalingModes = []string{"floor", "bufio", "readyreader", "grpc-plaintext", "grpc-readyconn"}

type config struct {
	n             int
	modes         []string
	opts          options
	json          bool
	svg, png      string
	scaling       []int
	scalingModes  []string
	inProcess     bool
	adaptiveStack bool
	quiet         bool
}

// childRequest is what the parent asks a child process to measure.
type childRequest struct {
	Mode     string  `json:"mode"`
	N        int     `json:"n"`
	Options  options `json:"options"`
	Progress string  `json:"progress,omitempty"` // prefix of the live progress line; none if empty
}

// job is one measurement: a mode at one N.
type job struct {
	mode string
	n    int
}

func (j job) String() string { return fmt.Sprintf("%s N=%d", j.mode, j.n) }

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
	live := !cfg.quiet && isTerminal(os.Stderr) && stderr == io.Writer(os.Stderr)

	measureOne := func(j job, label string) (result, error) {
		if cfg.inProcess {
			m, _ := findMode(j.mode)
			var progress func(func() int64) func()
			if live {
				progress = progressTo(stderr, label, j.n)
			}
			opts := cfg.opts
			if j.n != cfg.n {
				opts.Burst = 0 // the scaling table shows the first measurement only
			}
			return measure(m, j.n, opts, progress)
		}
		opts := cfg.opts
		if j.n != cfg.n {
			opts.Burst = 0 // the scaling table shows the first measurement only
		}
		req := childRequest{Mode: j.mode, N: j.n, Options: opts}
		if live {
			req.Progress = label
		}
		return measureInChild(req, !cfg.adaptiveStack, stderr)
	}

	rep := report{
		Go:        runtime.Version(),
		GOOS:      runtime.GOOS,
		GOARCH:    runtime.GOARCH,
		CPUs:      runtime.NumCPU(),
		N:         cfg.n,
		Date:      time.Now().UTC().Format(time.RFC3339),
		Isolation: "one child process per mode and N",
		Options:   cfg.opts,
		StackStart: "pinned: each child runs with GODEBUG=" + pinStackStart +
			", so every goroutine starts with a 2 KiB stack whatever ran before it",
	}
	if cfg.inProcess {
		rep.Isolation = "all modes in one process"
		rep.StackStart = "adaptive (-inprocess cannot pin it): new goroutines start at the average stack size the last collection saw"
	} else if cfg.adaptiveStack {
		rep.StackStart = "adaptive (-adaptive-stack): new goroutines start at the average stack size the last collection saw"
	}

	// The plan: every mode at N, then the other points of the scaling
	// table.
	var plan []job
	for _, name := range cfg.modes {
		plan = append(plan, job{name, cfg.n})
	}
	for _, name := range cfg.scalingModes {
		for _, n := range cfg.scaling {
			if n != cfg.n {
				plan = append(plan, job{name, n})
			}
		}
	}
	failed := false
	results := map[job]result{}
	for k, j := range plan {
		label := fmt.Sprintf("[%d/%d]", k+1, len(plan))
		if !cfg.quiet {
			fmt.Fprintf(stderr, "idlemem: %s %s%s\n", label, j, followedBy(plan[k+1:]))
		}
		r, err := measureOne(j, label)
		if err != nil {
			fmt.Fprintf(stderr, "idlemem: %v\n", err)
			rep.Errors = append(rep.Errors, err.Error())
			failed = true
			continue
		}
		results[j] = r
		if j.n == cfg.n {
			rep.Results = append(rep.Results, r)
			rep.setRatios()
		}
		if !cfg.quiet {
			fmt.Fprintf(stderr, "idlemem: %s %s: %s\n", label, j, rep.summary(r))
		}
	}
	for _, name := range cfg.scalingModes {
		s := scalingRow{Mode: name}
		for _, n := range cfg.scaling {
			r, ok := results[job{name, n}]
			if !ok {
				continue // failed and reported
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

// followedBy describes what comes after the current measurement.
func followedBy(rest []job) string {
	switch len(rest) {
	case 0:
		return " (last)"
	case 1:
		return fmt.Sprintf(" (then %s)", rest[0])
	default:
		return fmt.Sprintf(" (then %s and %d more)", rest[0], len(rest)-1)
	}
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("idlemem", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 2000, "connections to open per mode (each uses 2 file descriptors)")
	modesFlag := fs.String("modes", strings.Join(modeNames(), ","), "comma-separated modes to measure; floor is always measured, as the reference for ratios")
	msg := fs.String("msg", formatSize(defaultOptions.Msg), "size of the message each side of the non-gRPC modes receives before going idle (e.g. 100, 64KiB)")
	burst := fs.String("burst", formatSize(defaultOptions.Burst), "bytes each gRPC connection carries each way (one FullDuplexCall in 64 KiB messages) before a second measurement; 0 to skip it")
	setupOnReader := fs.Bool("setup-on-reader", false, "run each end's handshake and sends on its reader goroutine instead of a goroutine of their own (non-gRPC modes)")
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
	adaptive := fs.Bool("adaptive-stack", false, "leave Go's adaptive goroutine start size on in the child processes (default: GODEBUG="+pinStackStart+" there)")
	quiet := fs.Bool("q", false, "print no progress lines on stderr")
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
	cfg := config{n: *n, json: *jsonOut, svg: *svg, png: *png, inProcess: *inProcess, adaptiveStack: *adaptive, quiet: *quiet}
	if cfg.n <= 0 {
		return config{}, fmt.Errorf("-n must be positive, got %d", cfg.n)
	}
	var err error
	if cfg.opts.Msg, err = parseSize(*msg); err != nil || cfg.opts.Msg == 0 || cfg.opts.Msg > maxMsg {
		return config{}, fmt.Errorf("-msg: %q is not a size between 1 B and %s", *msg, formatSize(maxMsg))
	}
	if cfg.opts.Burst, err = parseSize(*burst); err != nil || cfg.opts.Burst > maxMsg {
		return config{}, fmt.Errorf("-burst: %q is not a size between 0 and %s", *burst, formatSize(maxMsg))
	}
	cfg.opts.SetupOnReader = *setupOnReader
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

// maxMsg bounds -msg and -burst.
const maxMsg = 64 << 20

// parseSize parses a byte count: a whole number, optionally followed by B,
// K/KB/KiB or M/MB/MiB (all binary: K = 1024).
func parseSize(s string) (int, error) {
	s = strings.TrimSpace(s)
	num := strings.TrimRightFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.ToLower(strings.TrimSpace(s[len(num):]))
	mult := 0
	switch unit {
	case "", "b":
		mult = 1
	case "k", "kb", "kib":
		mult = 1 << 10
	case "m", "mb", "mib":
		mult = 1 << 20
	default:
		return 0, fmt.Errorf("unknown unit %q", unit)
	}
	v, err := strconv.Atoi(num)
	if err != nil || v < 0 || v > maxMsg/mult {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return v * mult, nil
}

// formatSize writes a byte count the way parseSize reads it.
func formatSize(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
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
// re-run with the request in the environment. With pin, the child runs with
// GODEBUG=adaptivestackstart=0 (added to any GODEBUG already set), so that
// its goroutines' starting stack size does not depend on what ran before.
func measureInChild(req childRequest, pin bool, stderr io.Writer) (result, error) {
	exe, err := os.Executable()
	if err != nil {
		return result{}, fmt.Errorf("mode %s: cannot find own executable to re-run: %w", req.Mode, err)
	}
	reqJSON, err := json.Marshal(req)
	if err != nil {
		return result{}, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+string(reqJSON))
	if pin {
		cmd.Env = withGODEBUG(cmd.Env, pinStackStart)
	}
	cmd.Stderr = stderr
	out, err := cmd.Output()
	if err != nil {
		return result{}, fmt.Errorf("mode %s (N=%d): child process: %w", req.Mode, req.N, err)
	}
	var r result
	if err := json.Unmarshal(out, &r); err != nil {
		return result{}, fmt.Errorf("mode %s (N=%d): child process output: %w", req.Mode, req.N, err)
	}
	return r, nil
}

// withGODEBUG returns env with setting appended to its GODEBUG variable
// (the last of several settings of one name wins).
func withGODEBUG(env []string, setting string) []string {
	out := make([]string, 0, len(env)+1)
	value := setting
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			if v != "" {
				value = v + "," + setting
			}
			continue
		}
		out = append(out, kv)
	}
	return append(out, "GODEBUG="+value)
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
	if req.Progress != "" {
		progress = progressTo(stderr, req.Progress, req.N)
	}
	r, err := measure(m, req.N, req.Options, progress)
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
