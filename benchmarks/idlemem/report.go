package main

import (
	"fmt"
	"image/color"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// report is everything idlemem measured; -json writes it as is.
type report struct {
	Go        string `json:"go"`
	GOOS      string `json:"goos"`
	GOARCH    string `json:"goarch"`
	CPUs      int    `json:"cpus"`
	N         int    `json:"n"`
	Date      string `json:"date"`
	Isolation string `json:"isolation"`
	// StackStart says how the goroutine start size was set.
	StackStart string       `json:"stack_start"`
	Options    options      `json:"options"`
	Results    []result     `json:"results"`
	Scaling    []scalingRow `json:"scaling,omitempty"`
	Errors     []string     `json:"errors,omitempty"`
}

// scalingRow is one mode's cost per connection at several values of N.
type scalingRow struct {
	Mode   string         `json:"mode"`
	Points []scalingPoint `json:"points"`
}

type scalingPoint struct {
	N            int     `json:"n"`
	TotalPerConn float64 `json:"total_bytes_per_conn"`
	HeapPerConn  float64 `json:"heap_inuse_bytes_per_conn"`
	StackPerConn float64 `json:"stack_inuse_bytes_per_conn"`
}

func (r *report) find(mode string) int {
	for i, res := range r.Results {
		if res.Mode == mode {
			return i
		}
	}
	return -1
}

// setRatios fills in every result's ratio to the floor mode, if the floor
// was measured and came out positive.
func (r *report) setRatios() {
	i := r.find(modes[0].name)
	if i < 0 || r.Results[i].TotalPerConn <= 0 {
		return
	}
	floor := r.Results[i].TotalPerConn
	for j := range r.Results {
		v := r.Results[j].TotalPerConn / floor
		r.Results[j].RatioToFloor = &v
	}
}

func kib(b float64) string { return fmt.Sprintf("%.1f", b/1024) }

// summary is the one-line progress report of a result.
func (r *report) summary(res result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s KiB per connection (heap %s + stack %s)", kib(res.TotalPerConn), kib(res.HeapPerConn), kib(res.StackPerConn))
	if i := r.find(modes[0].name); i >= 0 && res.N == r.N && r.Results[i].TotalPerConn > 0 {
		fmt.Fprintf(&b, ", %.2fx floor", res.TotalPerConn/r.Results[i].TotalPerConn)
	}
	if res.AfterBurst != nil {
		fmt.Fprintf(&b, "; after the burst (%.1f s) %s KiB", res.BurstSeconds, kib(res.AfterBurst.TotalPerConn))
	}
	fmt.Fprintf(&b, "; opened in %.1f s", res.OpenSeconds)
	return b.String()
}

// writeTable writes the human-readable report.
func (r *report) writeTable(w io.Writer) {
	fmt.Fprintf(w, "idlemem: memory per idle connection, N = %d connections per mode\n", r.N)
	fmt.Fprintf(w, "%s %s/%s, %d CPUs, %s, %s\n", r.Go, r.GOOS, r.GOARCH, r.CPUs, r.Isolation, r.Date)
	fmt.Fprintf(w, "goroutine start stack: %s\n", r.StackStart)
	setup := "on a goroutine of their own; each end's reader goroutine only reads"
	if r.Options.SetupOnReader {
		setup = "on each end's reader goroutine (-setup-on-reader)"
	}
	fmt.Fprintf(w, "exchange before idle (non-gRPC modes): one %s message each way; handshakes and sends %s\n", formatSize(r.Options.Msg), setup)
	if slices.ContainsFunc(r.Results, func(res result) bool { return strings.HasPrefix(res.Mode, "grpc") }) {
		fmt.Fprintf(w, "gRPC modes: idle after one health-check RPC")
		if r.Options.Burst > 0 {
			fmt.Fprintf(w, ", and again after a burst of %s each way per connection (\"burst\" columns)", formatSize(r.Options.Burst))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "One connection = both ends of a TCP loopback connection (client side + server side,\n"+
		"each with a reader blocked); for gRPC, one ClientConn + its server transport.\n"+
		"heap/stack = runtime HeapInuse/StackInuse after GC, minus the baseline before opening, / N.\n"+
		"pool = bytes the mode's readyconn bufferpool has handed out while idle (all N together).\n"+
		"goroutines = goroutines per connection while idle, both ends: 2 for the non-gRPC modes (one\n"+
		"reader per end); 8 for a gRPC pair (see the package documentation for which).\n"+
		"start = the size new goroutines started with (bytes). x floor = total / the floor's total.\n\n")

	burst := false
	for _, res := range r.Results {
		burst = burst || res.AfterBurst != nil
	}
	// Names are padded to the longest, so that the right-aligned columns
	// keep them left-aligned.
	width := 15
	for _, res := range r.Results {
		width = max(width, len(res.Mode))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	hdr := fmt.Sprintf("%-*s\theap KiB\tstack KiB\ttotal KiB\tpool B\tgoroutines\tstart B\tx floor\t", width, "mode")
	if burst {
		hdr += "burst KiB\tburst x floor\t"
	}
	fmt.Fprintln(tw, hdr)
	floor := -1.0
	if i := r.find(modes[0].name); i >= 0 {
		floor = r.Results[i].TotalPerConn
	}
	for _, res := range r.Results {
		pool := "-"
		if res.PoolInUseBytes != nil {
			pool = fmt.Sprint(*res.PoolInUseBytes)
		}
		ratio := "-"
		if res.RatioToFloor != nil {
			ratio = fmt.Sprintf("%.2f", *res.RatioToFloor)
		}
		line := fmt.Sprintf("%-*s\t%s\t%s\t%s\t%s\t%.1f\t%d\t%s\t", width, res.Mode, kib(res.HeapPerConn), kib(res.StackPerConn),
			kib(res.TotalPerConn), pool, res.GoroutinesPerConn, res.StackStartBytes, ratio)
		if burst {
			if b := res.AfterBurst; b != nil {
				bratio := "-"
				if floor > 0 {
					bratio = fmt.Sprintf("%.2f", b.TotalPerConn/floor)
				}
				line += fmt.Sprintf("%s\t%s\t", kib(b.TotalPerConn), bratio)
			} else {
				line += "-\t-\t"
			}
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()

	fmt.Fprintln(w)
	for _, res := range r.Results {
		fmt.Fprintf(w, "  %-*s %s\n", width, res.Mode, res.Description)
	}

	if len(r.Scaling) > 0 {
		var ns []int
		for _, s := range r.Scaling {
			for _, p := range s.Points {
				if !containsInt(ns, p.N) {
					ns = append(ns, p.N)
				}
			}
		}
		fmt.Fprintf(w, "\ntotal KiB per connection by N (a flat row means the cost is per connection, not shared):\n\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		var hdr strings.Builder
		fmt.Fprintf(&hdr, "%-15s\t", "mode")
		for _, n := range ns {
			fmt.Fprintf(&hdr, "N=%d\t", n)
		}
		fmt.Fprintln(tw, hdr.String())
		for _, s := range r.Scaling {
			var line strings.Builder
			fmt.Fprintf(&line, "%-15s\t", s.Mode)
			for _, n := range ns {
				v := "-"
				for _, p := range s.Points {
					if p.N == n {
						v = kib(p.TotalPerConn)
					}
				}
				line.WriteString(v + "\t")
			}
			fmt.Fprintln(tw, line.String())
		}
		tw.Flush()
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "\n%d measurement(s) failed:\n", len(r.Errors))
		for _, e := range r.Errors {
			fmt.Fprintf(w, "  %s\n", firstLine(e))
		}
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// writeChart draws a bar chart of KiB per connection per mode, heap and
// stack stacked, to file in format ("svg", "png", or another format
// gonum.org/v1/plot knows).
func (r *report) writeChart(file, format string) error {
	if len(r.Results) == 0 {
		return fmt.Errorf("no results to draw")
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Idle memory per connection (client + server end), N = %d, %s %s/%s",
		r.N, r.Go, r.GOOS, r.GOARCH)
	p.Y.Label.Text = "KiB per connection (Go heap + stacks)"
	p.Y.Min = 0

	heap := make(plotter.Values, len(r.Results))
	stack := make(plotter.Values, len(r.Results))
	names := make([]string, len(r.Results))
	labels := plotter.XYLabels{XYs: make(plotter.XYs, len(r.Results)), Labels: make([]string, len(r.Results))}
	for i, res := range r.Results {
		heap[i] = max(res.HeapPerConn, 0) / 1024
		stack[i] = max(res.StackPerConn, 0) / 1024
		names[i] = res.Mode
		labels.XYs[i] = plotter.XY{X: float64(i), Y: heap[i] + stack[i]}
		labels.Labels[i] = fmt.Sprintf("%.1f", res.TotalPerConn/1024)
	}
	width := vg.Points(28)
	hb, err := plotter.NewBarChart(heap, width)
	if err != nil {
		return err
	}
	hb.Color = color.RGBA{R: 0x44, G: 0x77, B: 0xaa, A: 0xff}
	hb.LineStyle.Width = 0
	sb, err := plotter.NewBarChart(stack, width)
	if err != nil {
		return err
	}
	sb.Color = color.RGBA{R: 0xee, G: 0x99, B: 0x33, A: 0xff}
	sb.LineStyle.Width = 0
	sb.StackOn(hb)
	lb, err := plotter.NewLabels(labels)
	if err != nil {
		return err
	}
	for i := range lb.TextStyle {
		lb.TextStyle[i].XAlign = -0.5 // centred on the bar
		lb.TextStyle[i].YAlign = 0    // above the bar
	}
	p.Add(hb, sb, lb)
	p.Legend.Add("Go heap in use", hb)
	p.Legend.Add("goroutine stacks", sb)
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs = vg.Points(8)
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = 0.5
	p.X.Tick.Label.XAlign = -1
	p.X.Tick.Label.YAlign = -0.5
	// Leave head room for the labels above the tallest bar.
	_, _, _, ymax := sb.DataRange()
	p.Y.Max = ymax * 1.15

	w := vg.Length(max(6, 1.1*float64(len(r.Results)))) * vg.Inch
	wt, err := p.WriterTo(w, 4.5*vg.Inch, format)
	if err != nil {
		return err
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := wt.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
