package httpapi

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/tandem-io/tandem"
)

// The status page at GET /: one node's view of the cluster for an
// operator's browser, rendered on the server from status.html (no script;
// it reloads itself every 2 s). It needs the admin token, which a browser
// sends as the password of HTTP Basic auth (scopePage).

//go:embed status.html
var statusHTML string

// statusPage is the parsed template; html/template escapes every value.
var statusPage = template.Must(template.New("status").Parse(statusHTML))

// statusCSP lets the page use its inline style and nothing else: no
// script, no frame, no request to anywhere.
const statusCSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

// The ring's picture: partitions drawn clockwise from the top, the outer
// ring coloured by primary, the inner by buddy, in a square of side
// ringSize.
const (
	ringSize     = 360.0
	outerRadius  = 175.0
	outerInner   = 135.0
	buddyOuter   = 128.0
	buddyInner   = 98.0
	noOwnerColor = "#d0d0d0"
)

// palette colours the ring's members in name order; more members than
// colours get hues spaced around the wheel.
var palette = []string{
	"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
	"#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
}

// colorOf returns the colour of the i-th member.
func colorOf(i int) string {
	if i < len(palette) {
		return palette[i]
	}
	return fmt.Sprintf("hsl(%d, 55%%, 55%%)", (i*47)%360)
}

// statusView is what status.html renders.
type statusView struct {
	Node      string
	Build     tandem.BuildInfo
	Time      string
	Readiness tandem.Readiness
	Status    tandem.ClusterStatus
	// Members are the members membership knows, with their colour and
	// partitions in the ring (none for a member out of the ring).
	Members []memberRow
	// Primary and Buddy count the session copies the node holds.
	Primary, Buddy int
	// Arcs draw the ring: one per partition and role.
	Size      float64
	Center    float64
	Primaries []arc
	Buddies   []arc
	Events    []eventRow
}

// memberRow is one member in the table and the ring's legend.
type memberRow struct {
	tandem.MemberStatus
	Self    bool
	InRing  bool
	Color   string
	Primary int
	BuddyOf int
}

// arc is one partition's slice of a ring.
type arc struct {
	Partition int
	Path      string
	Color     string
	Title     string
}

// eventRow is one ring change as the page shows it.
type eventRow struct {
	Time    string
	Epoch   uint64
	Added   []string
	Removed []string
	Detail  string
}

// status handles GET /: the status page.
func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	v := h.statusView(time.Now())
	var buf bytes.Buffer
	if err := statusPage.Execute(&buf, v); err != nil {
		h.log.Error("status page", "err", err)
		writeError(w, r, http.StatusInternalServerError, "internal", "cannot render the status page")
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Security-Policy", statusCSP)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// statusView gathers the node's view for the page.
func (h *Handler) statusView(now time.Time) statusView {
	st := h.node.Status()
	parts, _ := h.node.Partitions()
	v := statusView{
		Node:      h.node.Name(),
		Build:     tandem.Build(),
		Time:      now.UTC().Format("2006-01-02 15:04:05 UTC"),
		Readiness: h.node.Readiness(),
		Status:    st,
		Size:      ringSize,
		Center:    ringSize / 2,
	}
	v.Primary, v.Buddy = h.node.Count()

	// Colours by ring member, in name order; the legend's counts come from
	// the partitions drawn, so picture and legend agree.
	var ringNames []string
	primaries, buddies := map[string]int{}, map[string]int{}
	for _, p := range parts {
		primaries[p.Primary]++
		if p.Buddy != "" {
			buddies[p.Buddy]++
		}
		for _, name := range []string{p.Primary, p.Buddy} {
			if name != "" && !slices.Contains(ringNames, name) {
				ringNames = append(ringNames, name)
			}
		}
	}
	slices.Sort(ringNames)
	color := func(name string) string {
		if i := slices.Index(ringNames, name); i >= 0 {
			return colorOf(i)
		}
		return noOwnerColor
	}
	for _, m := range st.Members {
		v.Members = append(v.Members, memberRow{
			MemberStatus: m, Self: m.Name == v.Node, InRing: slices.Contains(ringNames, m.Name),
			Color: color(m.Name), Primary: primaries[m.Name], BuddyOf: buddies[m.Name],
		})
	}

	n := len(parts)
	for _, p := range parts {
		buddy, buddyColor := p.Buddy, color(p.Buddy)
		if buddy == "" {
			buddy, buddyColor = "none (under-replicated)", noOwnerColor
		}
		title := fmt.Sprintf("partition %d: primary %s, buddy %s", p.Partition, p.Primary, buddy)
		v.Primaries = append(v.Primaries, arc{Partition: p.Partition, Color: color(p.Primary), Title: title,
			Path: arcPath(v.Center, outerInner, outerRadius, p.Partition, n)})
		v.Buddies = append(v.Buddies, arc{Partition: p.Partition, Color: buddyColor, Title: title,
			Path: arcPath(v.Center, buddyInner, buddyOuter, p.Partition, n)})
	}

	for _, e := range h.node.Events() {
		v.Events = append(v.Events, eventRow{Time: e.Time.UTC().Format("15:04:05.000"), Epoch: e.Epoch,
			Added: e.Added, Removed: e.Removed, Detail: e.Detail})
	}
	return v
}

// arcPath returns the SVG path of slice i of n of the annulus between radii
// r0 < r1 around (c, c), clockwise from the top. A ring has at least two
// partitions (ring.Config.Validate), so a slice spans at most half a turn
// and every arc is a small one.
func arcPath(c, r0, r1 float64, i, n int) string {
	a0 := 2*math.Pi*float64(i)/float64(n) - math.Pi/2
	a1 := 2*math.Pi*float64(i+1)/float64(n) - math.Pi/2
	pt := func(r, a float64) (float64, float64) { return c + r*math.Cos(a), c + r*math.Sin(a) }
	x0, y0 := pt(r1, a0)
	x1, y1 := pt(r1, a1)
	x2, y2 := pt(r0, a1)
	x3, y3 := pt(r0, a0)
	return fmt.Sprintf("M%.2f %.2fA%g %g 0 0 1 %.2f %.2fL%.2f %.2fA%g %g 0 0 0 %.2f %.2fZ",
		x0, y0, r1, r1, x1, y1, x2, y2, r0, r0, x3, y3)
}
