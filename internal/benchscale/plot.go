package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"slices"
	"strings"
)

// writePlot draws two panels against the service count M (log scale), one
// line per node count N: failover time (solid: the last service running
// elsewhere, dashed: the first) and raft log bytes per second. Plain
// image/png with a built-in 5×7 font, no external assets.
func writePlot(path string, rs []Result) error {
	const w, h = 1200, 520
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	fill(img, img.Bounds(), color.RGBA{255, 255, 255, 255})
	var ns []int
	var ms []int
	commits := map[string]bool{}
	for _, r := range rs {
		if !slices.Contains(ns, r.Nodes) {
			ns = append(ns, r.Nodes)
		}
		if !slices.Contains(ms, r.Services) {
			ms = append(ms, r.Services)
		}
		commits[r.Commit] = true
	}
	slices.Sort(ns)
	slices.Sort(ms)
	var cs []string
	for c := range commits {
		cs = append(cs, c)
	}
	slices.Sort(cs)
	text(img, 20, 10, 2, black, "HAXD SCALE BENCHMARK, COMMIT "+strings.ToUpper(strings.Join(cs, ", ")))
	panels := []struct {
		title string
		val   func(Result) [2]float64 // [solid, dashed]; dashed < 0: none
		unit  func(float64) string
	}{
		{"FAILOVER TIME S (SOLID LAST, DASHED FIRST)", func(r Result) [2]float64 {
			if r.FailoverServices == 0 || r.FailoverRecovered < r.FailoverServices {
				return [2]float64{-1, -1} // not measured, or not every service recovered
			}
			return [2]float64{r.FailoverLastSeconds, r.FailoverFirstSeconds}
		}, func(v float64) string { return fmt.Sprintf("%.1f", v) }},
		{"RAFT LOG BYTES/S (MEDIAN NODE)", func(r Result) [2]float64 {
			if r.WindowMeasured == 0 && r.RaftBytesPerSecond == 0 {
				return [2]float64{-1, -1} // the cell failed before its window (results from before WindowMeasured have rates)
			}
			return [2]float64{r.RaftBytesPerSecond, -1}
		}, humanBytes},
	}
	for i, p := range panels {
		x0, y0 := 90+i*600, 60
		plotPanel(img, image.Rect(x0, y0, x0+470, y0+380), p.title, rs, ns, ms, p.val, p.unit)
	}
	// Legend.
	lx := 90
	for i, n := range ns {
		c := palette[i%len(palette)]
		line(img, lx, 495, lx+30, 495, c, false)
		text(img, lx+36, 488, 2, black, fmt.Sprintf("N=%d", n))
		lx += 130
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return f.Close()
}

var (
	black   = color.RGBA{0, 0, 0, 255}
	grey    = color.RGBA{200, 200, 200, 255}
	palette = []color.RGBA{{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255}, {148, 103, 189, 255}, {140, 86, 75, 255}}
)

func plotPanel(img *image.RGBA, box image.Rectangle, title string, rs []Result, ns, ms []int,
	val func(Result) [2]float64, unit func(float64) string) {
	text(img, box.Min.X, box.Min.Y-22, 2, black, title)
	ymax := 0.0
	for _, r := range rs {
		v := val(r)
		ymax = max(ymax, v[0], v[1])
	}
	if ymax <= 0 {
		ymax = 1
	}
	ymax = niceCeil(ymax * 1.1)
	xmin, xmax := 1.0, 2.0
	if len(ms) > 0 {
		xmin, xmax = math.Log10(float64(ms[0]))-0.15, math.Log10(float64(ms[len(ms)-1]))+0.15
	}
	px := func(m float64) int {
		return box.Min.X + int((math.Log10(m)-xmin)/(xmax-xmin)*float64(box.Dx()))
	}
	py := func(v float64) int { return box.Max.Y - int(v/ymax*float64(box.Dy())) }
	// Grid and axes.
	for i := 0; i <= 4; i++ {
		v := ymax * float64(i) / 4
		y := py(v)
		line(img, box.Min.X, y, box.Max.X, y, grey, false)
		s := unit(v)
		text(img, box.Min.X-8-len(s)*12, y-7, 2, black, s)
	}
	for _, m := range ms {
		x := px(float64(m))
		line(img, x, box.Min.Y, x, box.Max.Y, grey, false)
		s := fmt.Sprint(m)
		text(img, x-len(s)*6, box.Max.Y+8, 2, black, s)
	}
	line(img, box.Min.X, box.Max.Y, box.Max.X, box.Max.Y, black, false)
	line(img, box.Min.X, box.Min.Y, box.Min.X, box.Max.Y, black, false)
	text(img, box.Max.X-170, box.Max.Y+30, 2, black, "SERVICES M")
	for i, n := range ns {
		c := palette[i%len(palette)]
		var pts []Result
		for _, r := range rs {
			if r.Nodes == n {
				pts = append(pts, r)
			}
		}
		for k := range 2 {
			var px0, py0 int
			prev := false
			for _, r := range pts {
				v := val(r)[k]
				if v < 0 {
					continue
				}
				x, y := px(float64(r.Services)), py(v)
				fill(img, image.Rect(x-3, y-3, x+4, y+4), c)
				if prev {
					line(img, px0, py0, x, y, c, k == 1)
				}
				px0, py0, prev = x, y, true
			}
		}
	}
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, f := range []float64{1, 2, 5, 10} {
		if f*p >= v {
			return f * p
		}
	}
	return 10 * p
}

// humanBytes writes v with SI prefixes (K = 1000).
func humanBytes(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.0fK", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

// line draws a 2-pixel line (dashed: 8 on, 6 off).
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA, dashed bool) {
	dx, dy := x1-x0, y1-y0
	steps := max(abs(dx), abs(dy), 1)
	for i := 0; i <= steps; i++ {
		if dashed && i%14 >= 8 {
			continue
		}
		x := x0 + dx*i/steps
		y := y0 + dy*i/steps
		fill(img, image.Rect(x, y, x+2, y+2), c)
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// text draws s in the 5×7 font, each dot scale×scale pixels; characters
// without a glyph are drawn as blanks.
func text(img *image.RGBA, x, y, scale int, c color.RGBA, s string) {
	for _, r := range s {
		if g, ok := font5x7[r]; ok {
			for row, bits := range g {
				for col, b := range bits {
					if b == '#' {
						fill(img, image.Rect(x+col*scale, y+row*scale, x+(col+1)*scale, y+(row+1)*scale), c)
					}
				}
			}
		}
		x += 6 * scale
	}
}

// font5x7 holds the glyphs the plot uses.
var font5x7 = map[rune][7]string{
	'0': {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."},
	'1': {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."},
	'2': {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"},
	'3': {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."},
	'4': {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."},
	'5': {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."},
	'6': {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."},
	'7': {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."},
	'8': {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."},
	'9': {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."},
	'A': {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"},
	'B': {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."},
	'C': {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."},
	'D': {"###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."},
	'E': {"#####", "#....", "#....", "####.", "#....", "#....", "#####"},
	'F': {"#####", "#....", "#....", "####.", "#....", "#....", "#...."},
	'G': {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"},
	'H': {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"},
	'I': {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."},
	'J': {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."},
	'K': {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"},
	'L': {"#....", "#....", "#....", "#....", "#....", "#....", "#####"},
	'M': {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"},
	'N': {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"},
	'O': {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."},
	'P': {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."},
	'Q': {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"},
	'R': {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"},
	'S': {".####", "#....", "#....", ".###.", "....#", "....#", "####."},
	'T': {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."},
	'U': {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."},
	'V': {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."},
	'W': {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."},
	'X': {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"},
	'Y': {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."},
	'Z': {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"},
	'.': {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."},
	',': {".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."},
	':': {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."},
	'-': {".....", ".....", ".....", "#####", ".....", ".....", "....."},
	'=': {".....", ".....", "#####", ".....", "#####", ".....", "....."},
	'/': {".....", "....#", "...#.", "..#..", ".#...", "#....", "....."},
	'(': {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."},
	')': {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."},
	'%': {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"},
}
