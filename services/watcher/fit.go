package watcher

import (
	"math"
	"time"
)

// The fit behind MemoryNearLimit: an ordinary least-squares line through
// a window of (time, value) samples, its R², and when it reaches a limit.
// Pure functions: the numbers of a warning can be checked by hand.

// point is one sample of a series: a time and a value (bytes).
type point struct {
	T time.Time
	V float64
}

// lineFit is the straight line v = Intercept + Slope*(t - Origin).
type lineFit struct {
	Origin    time.Time
	Intercept float64
	// Slope is per second.
	Slope float64
	// R2 is the coefficient of determination: the share of the samples'
	// variance the line explains (1 for points on a line). Zero when the
	// samples do not vary.
	R2 float64
	// N is the number of samples; Span the time between the first and
	// the last.
	N    int
	Span time.Duration
}

// fitLine fits a line through pts (in time order) by least squares. ok is
// false with fewer than 3 samples or when they all share one time.
func fitLine(pts []point) (f lineFit, ok bool) {
	n := len(pts)
	if n < 3 {
		return lineFit{}, false
	}
	f.Origin, f.N = pts[0].T, n
	f.Span = pts[n-1].T.Sub(pts[0].T)
	// Centred sums (Welford-free: n is small) keep the arithmetic exact
	// enough at byte scale.
	var mx, my float64
	for _, p := range pts {
		mx += p.T.Sub(f.Origin).Seconds()
		my += p.V
	}
	mx /= float64(n)
	my /= float64(n)
	var sxx, sxy, syy float64
	for _, p := range pts {
		dx, dy := p.T.Sub(f.Origin).Seconds()-mx, p.V-my
		sxx += dx * dx
		sxy += dx * dy
		syy += dy * dy
	}
	if sxx == 0 {
		return lineFit{}, false
	}
	f.Slope = sxy / sxx
	f.Intercept = my - f.Slope*mx
	if syy > 0 {
		f.R2 = math.Min(1, math.Max(0, sxy*sxy/(sxx*syy)))
	}
	return f, true
}

// at is the line's value at t.
func (f lineFit) at(t time.Time) float64 { return f.Intercept + f.Slope*t.Sub(f.Origin).Seconds() }

// crossing is when the line reaches limit, seen at now: now itself when
// it is there already, false when it never does (a flat or falling line
// below the limit).
func (f lineFit) crossing(limit float64, now time.Time) (time.Time, bool) {
	v := f.at(now)
	if v >= limit {
		return now, true
	}
	if f.Slope <= 0 {
		return time.Time{}, false
	}
	secs := (limit - v) / f.Slope
	if secs > float64(100*365*24*3600) {
		return time.Time{}, false // beyond any horizon, and beyond time.Duration
	}
	return now.Add(time.Duration(secs * float64(time.Second))), true
}

// memoryProjection is a memory trend's verdict.
type memoryProjection struct {
	Fit       lineFit
	Current   float64 // the fitted value at the last sample
	Last      point   // the last sample as measured
	CrossesAt time.Time
	// Warn: growing, confident and crossing within the horizon.
	Warn bool
}

// projectMemory fits the samples of the window ending at the last sample
// and decides whether they warn: a positive slope, R² at least
// confidence, and the limit reached within horizon of now. A verdict
// needs 3 samples spanning half the window at least: a line through the
// first minutes of a pod says little about its next hours.
func projectMemory(pts []point, limit float64, window, horizon time.Duration, confidence float64, now time.Time) (memoryProjection, bool) {
	if len(pts) == 0 || limit <= 0 {
		return memoryProjection{}, false
	}
	last := pts[len(pts)-1]
	from := last.T.Add(-window)
	i := 0
	for i < len(pts) && pts[i].T.Before(from) {
		i++
	}
	in := pts[i:]
	f, ok := fitLine(in)
	if !ok || f.Span < window/2 {
		return memoryProjection{}, false
	}
	p := memoryProjection{Fit: f, Current: f.at(last.T), Last: last}
	at, crosses := f.crossing(limit, now)
	if crosses {
		p.CrossesAt = at
	}
	p.Warn = f.Slope > 0 && f.R2 >= confidence && crosses && !at.After(now.Add(horizon))
	return p, true
}
