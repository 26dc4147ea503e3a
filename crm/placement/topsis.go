package placement

import "math"

// criteriaWeights are the weights of the four TOPSIS criteria (average CPU,
// highest CPU, average memory, highest memory), placement.md §7.3.3.
var criteriaWeights = [4]float64{1.0 / 18, 2.0 / 18, 5.0 / 18, 10.0 / 18}

// nodeLoad is one node's aggregated stats as seen by the scorer.
type nodeLoad struct {
	maxCPU, maxMem float64
	cpu, mem       float64
}

// criteria computes the four minimised criteria of placement.md §7.3.3 for
// the node loads, in the given (sorted) order.
func criteria(loads []nodeLoad) [4]float64 {
	n := float64(len(loads))
	var sumU2, sumV2 float64
	maxU, maxV := 0.0, 0.0
	for _, l := range loads {
		u := l.cpu / l.maxCPU
		v := l.mem / l.maxMem
		sumU2 += u * u
		sumV2 += v * v
		if u > maxU {
			maxU = u
		}
		if v > maxV {
			maxV = v
		}
	}
	return [4]float64{1 + math.Sqrt(sumU2/n), 1 + maxU, 1 + math.Sqrt(sumV2/n), 1 + maxV}
}

// topsis returns the closeness S_k in [0,1] of every alternative (higher is
// better) for minimised criteria with the fixed weights.
func topsis(alts [][4]float64) []float64 {
	var norm [4]float64
	for c := range 4 {
		var s float64
		for _, a := range alts {
			s += a[c] * a[c]
		}
		norm[c] = math.Sqrt(s)
	}
	r := make([][4]float64, len(alts))
	for k, a := range alts {
		for c := range 4 {
			if norm[c] == 0 {
				r[k][c] = a[c]
			} else {
				r[k][c] = a[c] / norm[c]
			}
		}
	}
	var best, worst [4]float64
	for c := range 4 {
		for k := range r {
			if k == 0 || r[k][c] < best[c] {
				best[c] = r[k][c]
			}
			if k == 0 || r[k][c] > worst[c] {
				worst[c] = r[k][c]
			}
		}
	}
	out := make([]float64, len(alts))
	for k := range r {
		var dp, dm float64
		for c := range 4 {
			p := criteriaWeights[c] * (r[k][c] - best[c])
			m := criteriaWeights[c] * (r[k][c] - worst[c])
			dp += p * p
			dm += m * m
		}
		dp, dm = math.Sqrt(dp), math.Sqrt(dm)
		if dp+dm == 0 {
			out[k] = 0
		} else {
			out[k] = dm / (dp + dm)
		}
	}
	return out
}

// imbalance is the coefficient of variation of the node loads
// (cpu/maxcpu + mem/maxmem)/2, placement.md §10.2.
func imbalance(loads []nodeLoad) float64 {
	n := len(loads)
	if n < 2 {
		return 0
	}
	var sum float64
	for _, l := range loads {
		sum += (l.cpu/l.maxCPU + l.mem/l.maxMem) / 2
	}
	if sum == 0 {
		return 0
	}
	mean := sum / float64(n)
	var sq float64
	for _, l := range loads {
		d := (l.cpu/l.maxCPU+l.mem/l.maxMem)/2 - mean
		sq += d * d
	}
	return math.Sqrt(sq/float64(n)) / mean
}

// truncate15 cuts x to 15 digits after the decimal point.
func truncate15(x float64) float64 { return math.Trunc(x*1e15) / 1e15 }
