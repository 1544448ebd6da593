package watcher

import (
	"math"
	"testing"
	"time"
)

const mi = 1 << 20

// series returns n samples one step apart from t0, value f(i).
func series(n int, step time.Duration, f func(i int) float64) []point {
	out := make([]point, n)
	for i := range out {
		out[i] = point{T: t0.Add(time.Duration(i) * step), V: f(i)}
	}
	return out
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

// A line through exact points: the slope, the intercept, R² = 1 and the
// crossing are the arithmetic's.
func TestFitLineExact(t *testing.T) {
	// 100Mi + 10Mi a minute, 7 samples a minute apart.
	pts := series(7, time.Minute, func(i int) float64 { return 100*mi + float64(i)*10*mi })
	f, ok := fitLine(pts)
	if !ok {
		t.Fatal("no fit")
	}
	if want := 10.0 * mi / 60; !near(f.Slope, want, 1e-6) {
		t.Errorf("slope %g B/s, want %g", f.Slope, want)
	}
	if !near(f.Intercept, 100*mi, 1e-3) || f.R2 != 1 || f.N != 7 || f.Span != 6*time.Minute {
		t.Errorf("fit %+v, want intercept 100Mi, R² 1, 7 samples over 6m", f)
	}
	// At the last sample (160Mi) a 200Mi limit is 4 minutes away.
	last := pts[6].T
	at, crosses := f.crossing(200*mi, last)
	if !crosses || !at.Equal(last.Add(4*time.Minute)) {
		t.Errorf("crossing %v %v, want %v", at, crosses, last.Add(4*time.Minute))
	}
	// Already there: crosses now.
	if at, ok := f.crossing(150*mi, last); !ok || !at.Equal(last) {
		t.Errorf("crossing of a limit already reached: %v %v, want now", at, ok)
	}
}

// R² of a zigzag by hand: x = 0,1,2,3 min, y = 0,3,0,3 (Mi): sxx 5, sxy 3
// (in minutes and Mi), syy 9, R² = 9/45 = 0.2.
func TestFitLineNoisyR2(t *testing.T) {
	ys := []float64{0, 3, 0, 3}
	pts := series(4, time.Minute, func(i int) float64 { return ys[i] * mi })
	f, ok := fitLine(pts)
	if !ok {
		t.Fatal("no fit")
	}
	if !near(f.R2, 0.2, 1e-9) {
		t.Errorf("R² %g, want 0.2", f.R2)
	}
	if want := 0.6 * mi / 60; !near(f.Slope, want, 1e-6) {
		t.Errorf("slope %g, want %g", f.Slope, want)
	}
}

func TestFitLineNeedsThreeDistinctTimes(t *testing.T) {
	if _, ok := fitLine(series(2, time.Minute, func(int) float64 { return 1 })); ok {
		t.Error("two samples fitted")
	}
	if _, ok := fitLine(series(5, 0, func(i int) float64 { return float64(i) })); ok {
		t.Error("samples at one time fitted")
	}
}

// projectMemory's verdicts: only a growing, confident line that reaches
// the limit within the horizon warns.
func TestProjectMemory(t *testing.T) {
	const limit = 512 * mi
	window, horizon := time.Hour, 24*time.Hour
	// 61 samples a minute apart over the last hour, 372Mi -> 412Mi:
	// 40Mi an hour, 100Mi to go: the limit in 2.5h.
	growing := series(61, time.Minute, func(i int) float64 { return 372*mi + float64(i)*40*mi/60 })
	now := growing[60].T
	noise := func(i int) float64 { return []float64{-30, 30}[i%2] * mi }
	for name, tc := range map[string]struct {
		pts        []point
		limit      float64
		horizon    time.Duration
		confidence float64
		verdict    bool // a fit is made
		warn       bool
		crossesAt  time.Time
	}{
		"growing toward the limit":          {growing, limit, horizon, 0.8, true, true, now.Add(150 * time.Minute)},
		"crossing beyond the horizon":       {growing, limit, 2 * time.Hour, 0.8, true, false, now.Add(150 * time.Minute)},
		"a limit far away":                  {growing, 64 << 30, horizon, 0.8, true, false, time.Time{}},
		"flat":                              {series(61, time.Minute, func(int) float64 { return 400 * mi }), limit, horizon, 0.8, true, false, time.Time{}},
		"decreasing":                        {series(61, time.Minute, func(i int) float64 { return 500*mi - float64(i)*mi }), limit, horizon, 0, true, false, time.Time{}},
		"noisy growth below the confidence": {series(61, time.Minute, func(i int) float64 { return 372*mi + float64(i)*40*mi/60 + noise(i) }), limit, horizon, 0.8, true, false, time.Time{}},
		"too short a span":                  {growing[50:], limit, horizon, 0.8, false, false, time.Time{}},
		"no limit":                          {growing, 0, horizon, 0.8, false, false, time.Time{}},
	} {
		t.Run(name, func(t *testing.T) {
			p, ok := projectMemory(tc.pts, tc.limit, window, tc.horizon, tc.confidence, tc.pts[len(tc.pts)-1].T)
			if ok != tc.verdict || p.Warn != tc.warn {
				t.Fatalf("verdict %v warn %v (R² %.3f slope %g/h crosses %v), want verdict %v warn %v",
					ok, p.Warn, p.Fit.R2, p.Fit.Slope*3600/mi, p.CrossesAt, tc.verdict, tc.warn)
			}
			if !tc.crossesAt.IsZero() && !p.CrossesAt.Equal(tc.crossesAt) {
				t.Errorf("crosses at %v, want %v", p.CrossesAt, tc.crossesAt)
			}
		})
	}
	// The noisy series' fit: the slope is still found, R² is what tells.
	p, _ := projectMemory(series(61, time.Minute, func(i int) float64 { return 372*mi + float64(i)*40*mi/60 + noise(i) }),
		limit, window, horizon, 0.8, now)
	if p.Fit.R2 >= 0.8 || p.Fit.Slope <= 0 {
		t.Errorf("noisy fit R² %.3f slope %g: want a positive slope below the confidence", p.Fit.R2, p.Fit.Slope)
	}
	// Only the window's samples are fitted: a drop two hours ago (a
	// restart) does not bend the last hour's line.
	old := series(60, time.Minute, func(int) float64 { return 500 * mi })
	for i := range old {
		old[i].T = old[i].T.Add(-2 * time.Hour)
	}
	p, ok := projectMemory(append(old, growing...), limit, window, horizon, 0.8, now)
	if !ok || p.Fit.N != 61 || p.Fit.R2 != 1 || !p.Warn {
		t.Errorf("fit over the window: %+v", p.Fit)
	}
}

func TestTrendTexts(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 30 * time.Second: "30s", 90 * time.Second: "1m30s", 45 * time.Minute: "45m", time.Hour: "1h",
		2 * time.Hour: "2h", 90 * time.Minute: "1h30m", 24 * time.Hour: "24h", time.Hour + 29*time.Second: "1h",
	} {
		if got := spanText(d); got != want {
			t.Errorf("spanText(%s) = %q, want %q", d, got, want)
		}
	}
	for b, want := range map[float64]string{412 * mi: "412Mi", 1.5 * (1 << 30): "1.5Gi", 12 << 30: "12Gi", 900 << 10: "900Ki", 10: "10 bytes"} {
		if got := sizeText(b); got != want {
			t.Errorf("sizeText(%g) = %q, want %q", b, got, want)
		}
	}
	now := time.Date(2026, 12, 6, 15, 10, 0, 0, time.UTC)
	for at, want := range map[time.Time]string{
		now: "now", now.Add(150*time.Minute + 20*time.Second): "around 17:40 UTC", now.Add(50 * time.Hour): "around Dec 8 17:10 UTC",
	} {
		if got := crossingText(at, now); got != want {
			t.Errorf("crossingText(%s) = %q, want %q", at, got, want)
		}
	}
}
