package extract

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/andybalholm/cascadia"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// This file decides, per element, what the cascade of style sheet rules and the inline
// style gives for the properties that can hide text, and whether that hides the element.
//
// Each element is styled twice ("scenes"): once with the certain rules only and once with
// every rule that may apply (rules under @media and other at-rules, selectors read only
// approximately). The element is hidden if either reading hides it, so a rule that may
// hide text always counts, while only a certain rule can override one that hides.

// scene is what an element inherits in one reading of the style sheets.
type scene struct {
	color, bg string    // text and background colour, RRGGBB
	vars      *varScope // custom properties in effect
}

// varScope holds the custom properties an element defines, resolved; invalidVar marks
// one that is defined but invalid (a reference cycle, an unresolvable var()).
type varScope struct {
	parent *varScope
	vals   map[string]string
}

const invalidVar = "\x00"

// styledDecl is a declaration with what orders it in the cascade.
type styledDecl struct {
	cssDecl
	inline bool
	spec   cascadia.Specificity
	order  int32
	idx    int
}

// before reports whether a loses to b in the cascade: !important, then inline over sheet,
// then specificity, then source order.
func (a *styledDecl) before(b *styledDecl) bool {
	switch {
	case a.important != b.important:
		return !a.important
	case a.inline != b.inline:
		return !a.inline
	case a.spec != b.spec:
		return a.spec.Less(b.spec)
	case a.order != b.order:
		return a.order < b.order
	}
	return a.idx < b.idx
}

// hidingProps are the properties whose computed value alone can hide an element, checked
// in this order.
var hidingProps = []string{
	"display", "visibility", "content-visibility", "opacity", "filter", "font-size", "color",
	"-webkit-text-fill-color",
	"left", "top", "right", "text-indent", "margin-left", "margin-top", "margin", "inset",
	"clip", "clip-path", "transform", "scale", "translate", "zoom", "height", "width", "max-height",
	"max-width",
}

// tinyScale is the largest scale factor (transform, scale, zoom) taken to make text unreadable.
const tinyScale = 0.1

// tinyFactor reports whether a scale factor (a number, or a percentage) is at most tinyScale.
func tinyFactor(a string) (tiny, ok bool) {
	f, ok := cssNumber(a, 0.01)
	return ok && math.Abs(f) <= tinyScale, ok
}

// hiddenBy reports whether the element n, in context ctx, is hidden from a reader, and
// updates ctx with its colours and custom properties. Text in its background colour is
// decided per text node (htmlCtx.sameColor).
func (h *htmlWalker) hiddenBy(n *html.Node, ctx *htmlCtx) bool {
	if _, ok := getAttr(n, "hidden"); ok {
		return true
	}
	if v, ok := getAttr(n, "aria-hidden"); ok && strings.EqualFold(strings.TrimSpace(v), "true") {
		return true
	}
	// Browsers show a <dialog> only when open (script opens it); a page's styles could show
	// a closed one, but hiding is never undone here.
	if _, open := getAttr(n, "open"); n.DataAtom == atom.Dialog && !open {
		return true
	}
	for i := range ctx.scenes {
		sc := &ctx.scenes[i]
		if n.Data == "font" {
			if c, ok := getAttr(n, "color"); ok {
				if c := cssColor(c); c != "" {
					sc.color = c
				}
			}
		}
		if c, ok := getAttr(n, "bgcolor"); ok {
			if c := cssColor(c); c != "" {
				sc.bg = c
			}
		}
	}
	if n.Data == "font" {
		if s, ok := getAttr(n, "size"); ok && strings.TrimSpace(s) == "0" {
			return true
		}
	}
	ms := h.sheet.match(n, h.anc)
	if h.sheet.exhausted {
		return true
	}
	var inline []cssDecl
	if s, ok := getAttr(n, "style"); ok {
		inline = parseDeclList(s)
	}
	hidden := false
	for i := range ctx.scenes {
		if h.styleScene(&ctx.scenes[i], ms, inline, i == 1) {
			hidden = true
		}
	}
	return hidden
}

// styleScene applies the rules in ms (with all false, only certain, exactly matched ones)
// and the inline declarations to sc, and reports whether they hide the element.
func (h *htmlWalker) styleScene(sc *scene, ms []ruleMatch, inline []cssDecl, all bool) bool {
	hidden := false
	var ds []styledDecl
	for _, m := range ms {
		if !m.exact {
			// The matching budget ran out: a candidate rule may match, and if it may hide
			// the element, it does.
			if all && m.rule.mayHide {
				for _, d := range m.rule.decls {
					v, _ := h.resolve(d.val, sc.vars)
					if hide, _ := hideCheck(d.prop, v, boxState{overflowHidden: true}); hide {
						hidden = true
					}
				}
			}
			continue
		}
		if !all && !m.rule.certain {
			continue
		}
		for i, d := range m.rule.decls {
			ds = append(ds, styledDecl{cssDecl: d, spec: m.rule.spec, order: m.rule.order, idx: i})
		}
	}
	for i, d := range inline {
		ds = append(ds, styledDecl{cssDecl: d, inline: true, order: math.MaxInt32, idx: i})
	}
	if len(ds) == 0 {
		return hidden
	}
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].before(&ds[j]) })
	win := map[string]int{} // property → index in ds of the declaration that wins
	var own map[string]string
	for i := range ds {
		win[ds[i].prop] = i
		if strings.HasPrefix(ds[i].prop, "--") {
			if own == nil {
				own = map[string]string{}
			}
			own[ds[i].prop] = ds[i].val
		}
	}
	if own != nil {
		parent := sc.vars
		scope := &varScope{parent: parent, vals: make(map[string]string, len(own))}
		lookup := func(name string) (string, bool) {
			if v, ok := own[name]; ok {
				return v, true
			}
			return h.lookupVar(parent, name)
		}
		for name, raw := range own {
			if v, ok := h.subst(raw, lookup, 0); ok {
				scope.vals[name] = v
			} else {
				scope.vals[name] = invalidVar
			}
		}
		sc.vars = scope
	}
	value := func(prop string) (v string, set, known bool) {
		i, ok := win[prop]
		if !ok {
			return "", false, true
		}
		v, known = h.resolve(ds[i].val, sc.vars)
		return v, true, known
	}
	var box boxState
	for _, p := range []string{"overflow", "overflow-x", "overflow-y"} {
		if v, _, _ := value(p); strings.Contains(v, "hidden") || strings.Contains(v, "clip") {
			box.overflowHidden = true
		}
	}
	for _, p := range []string{"background-clip", "-webkit-background-clip"} {
		if v, _, _ := value(p); strings.Contains(v, "text") {
			box.textClip = true
		}
	}
	for _, prop := range hidingProps {
		v, set, known := value(prop)
		if !set {
			continue
		}
		hide, understood := hideCheck(prop, v, box)
		if known && understood {
			hidden = hidden || hide
			continue
		}
		// The winning value cannot be read: it is not taken to override a declaration
		// that hides.
		for i := range ds {
			if ds[i].prop == prop {
				v, _ := h.resolve(ds[i].val, sc.vars)
				if hide, _ := hideCheck(prop, v, box); hide {
					hidden = true
				}
			}
		}
	}
	if v, set, known := value("color"); set && known {
		if c := cssColor(v); c != "" {
			sc.color = c
		}
	}
	if v, set, known := value("background-color"); set && known {
		if c := cssColor(v); c != "" {
			sc.bg = c
		}
	}
	return hidden
}

func (h *htmlWalker) lookupVar(s *varScope, name string) (string, bool) {
	for ; s != nil; s = s.parent {
		if v, ok := s.vals[name]; ok {
			return v, v != invalidVar
		}
	}
	v, ok := h.sheet.initial[name]
	return v, ok
}

// resolve returns v with its var() references substituted, in lower case; known is false
// when a reference cannot be resolved.
func (h *htmlWalker) resolve(v string, scope *varScope) (s string, known bool) {
	if indexFold(v, "var(") < 0 {
		return v, true
	}
	s, known = h.subst(v, func(name string) (string, bool) { return h.lookupVar(scope, name) }, 0)
	return strings.ToLower(s), known
}

// subst substitutes the var() references in v, following references in the values
// substituted up to a depth (deeper is a cycle).
func (h *htmlWalker) subst(v string, lookup func(string) (string, bool), depth int) (string, bool) {
	var b strings.Builder
	for {
		i := indexFold(v, "var(")
		if i < 0 {
			b.WriteString(v)
			return b.String(), true
		}
		h.varSubs++
		if depth > 16 || h.varSubs > maxVarSubstitutes {
			return "", false
		}
		end := i + 4 + scanTo(v[i+4:], ")")
		name, fallback, hasFallback := v[i+4:end], "", false
		if j := scanTo(name, ","); j < len(name) {
			name, fallback, hasFallback = name[:j], name[j+1:], true
		}
		val, ok := lookup(strings.TrimSpace(name))
		if ok {
			val, ok = h.subst(val, lookup, depth+1)
		}
		if !ok && hasFallback {
			val, ok = h.subst(strings.TrimSpace(fallback), lookup, depth+1)
		}
		if !ok {
			return "", false
		}
		b.WriteString(v[:i])
		b.WriteString(val)
		if b.Len() > maxVarValue {
			return "", false
		}
		v = v[min(end+1, len(v)):]
	}
}

// indexFold is strings.Index for an ASCII lower-case sub, ignoring ASCII case in s.
func indexFold(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		j := 0
		for j < len(sub) && lowerASCII(s[i+j]) == sub[j] {
			j++
		}
		if j == len(sub) {
			return i
		}
	}
	return -1
}

func lowerASCII(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// boxState is what other properties of an element say about how its box shows text.
type boxState struct {
	overflowHidden bool // overflow hidden or clip: a zero size hides the content
	textClip       bool // background-clip: text, where a transparent text fill shows the background
}

// hideCheck reports whether prop: v hides an element; known is false for a value it
// cannot read.
func hideCheck(prop, v string, box boxState) (hide, known bool) {
	v = strings.TrimSpace(v)
	switch v {
	case "", "inherit", "initial", "unset", "revert", "revert-layer":
		return false, true
	}
	switch prop {
	case "display":
		return v == "none", true
	case "visibility":
		return v == "hidden" || v == "collapse", true
	case "content-visibility":
		return v == "hidden", true
	case "opacity":
		f, ok := cssNumber(v, 0.01)
		return ok && f <= 0.05, ok
	case "font-size":
		v = fontShorthandSize(v)
		if fontSizeKeyword(v) {
			return false, true
		}
		px, ok := cssNumber(v, 0.16) // a percentage of a 16px font
		return ok && px <= 1, ok
	case "color", "-webkit-text-fill-color":
		if cssTransparent(v) {
			return prop == "color" || !box.textClip, true
		}
		return false, cssColor(v) != "" || v == "currentcolor"
	case "filter":
		// opacity(0), contrast(0) (one flat grey), or a blur that leaves no letter readable.
		for _, fn := range []string{"opacity", "contrast"} {
			for _, args := range cssFuncArgs(v, fn) {
				if len(args) == 1 {
					if f, ok := cssNumber(args[0], 0.01); ok && f <= 0.05 {
						return true, true
					}
				}
			}
		}
		for _, args := range cssFuncArgs(v, "blur") {
			if len(args) == 1 {
				if px, ok := cssNumber(args[0], 0.16); ok && px >= 5 {
					return true, true
				}
			}
		}
		return false, true
	case "left", "top", "right", "text-indent", "margin-left", "margin-top":
		if v == "auto" {
			return false, true
		}
		px, ok := cssNumber(v, 0.16)
		return ok && px <= -1000, ok
	case "margin", "inset":
		for _, f := range splitSpaces(v) {
			if px, ok := cssNumber(f, 0.16); ok && px <= -1000 {
				return true, true
			}
		}
		return false, true
	case "clip":
		r := strings.NewReplacer(" ", "", ",", "", "px", "").Replace(v)
		return r == "rect(0000)", true
	case "clip-path":
		r := strings.ReplaceAll(v, " ", "")
		return strings.HasPrefix(r, "inset(50%") || strings.HasPrefix(r, "inset(100%") ||
			r == "circle(0)" || r == "circle(0px)" || r == "circle(0%)", true
	case "transform":
		for _, f := range []string{"scale", "scalex", "scaley", "scale3d"} {
			for _, args := range cssFuncArgs(v, f) {
				for i, a := range args {
					if f == "scale3d" && i == 2 {
						break // the z factor leaves the text as it is
					}
					if tiny, _ := tinyFactor(a); tiny {
						return true, true
					}
				}
			}
		}
		// matrix(a, b, c, d, e, f): a tiny x or y axis, or a far-off translation.
		for _, args := range cssFuncArgs(v, "matrix") {
			if len(args) == 6 {
				var m [6]float64
				ok := true
				for i, a := range args {
					m[i], ok = cssNumber(a, 0.16)
					if !ok {
						break
					}
				}
				if ok && (math.Hypot(m[0], m[1]) <= tinyScale || math.Hypot(m[2], m[3]) <= tinyScale || m[4] <= -1000 || m[5] <= -1000) {
					return true, true
				}
			}
		}
		for _, f := range []string{"translate", "translatex", "translatey", "translate3d"} {
			for _, args := range cssFuncArgs(v, f) {
				for _, a := range args {
					if px, ok := cssNumber(a, 0.16); ok && px <= -1000 {
						return true, true
					}
				}
			}
		}
		return false, true
	case "scale":
		if v == "none" {
			return false, true
		}
		fs := splitSpaces(v)
		for i, f := range fs {
			if i == 2 {
				break // the z factor
			}
			tiny, ok := tinyFactor(f)
			if !ok {
				return false, false
			}
			if tiny {
				return true, true
			}
		}
		return false, true
	case "translate":
		if v == "none" {
			return false, true
		}
		for _, f := range splitSpaces(v) {
			if px, ok := cssNumber(f, 0.16); ok && px <= -1000 {
				return true, true
			}
		}
		return false, true
	case "zoom":
		if v == "normal" || v == "reset" {
			return false, true
		}
		return tinyFactor(v)
	case "height", "width", "max-height", "max-width":
		// Zero, or the 1px box of the "visually hidden" pattern, with overflow hidden.
		px, ok := cssNumber(v, 0.16)
		return ok && px <= 1 && box.overflowHidden, ok || v == "auto" || v == "none"
	}
	return false, true
}

// cssFuncArgs returns the arguments of each call of the function name in v.
func cssFuncArgs(v, name string) [][]string {
	var out [][]string
	for i := 0; i < len(v); {
		j := strings.Index(v[i:], name+"(")
		if j < 0 {
			break
		}
		start := i + j + len(name) + 1
		if k := i + j; k > 0 && isNameByte(v[k-1]) {
			i = start // the tail of another name (e.g. "-webkit-translate")
			continue
		}
		end := start + scanTo(v[start:], ")")
		var args []string
		for _, a := range splitSelectors(v[start:end]) { // split at top-level commas
			args = append(args, splitSpaces(a)...)
		}
		out = append(out, args)
		i = end
	}
	return out
}

func fontSizeKeyword(v string) bool {
	switch v {
	case "xx-small", "x-small", "small", "medium", "large", "x-large", "xx-large", "xxx-large",
		"smaller", "larger", "math":
		return true
	}
	return false
}

// fontShorthandSize returns the font size in a font shorthand value ("italic 0/0 a" gives
// "0"), or v when it finds none.
func fontShorthandSize(v string) string {
	f := splitSpaces(v)
	if len(f) < 2 && scanTo(v, "/") == len(v) {
		return v
	}
	for _, t := range f {
		if i := scanTo(t, "/"); i < len(t) {
			t = t[:i]
		}
		if fontSizeKeyword(t) {
			return t
		}
		if _, ok := cssNumber(t, 0.16); ok {
			if _, err := strconv.ParseFloat(t, 64); err != nil || t == "0" {
				return t // a length, not a unitless font-weight
			}
		}
	}
	return v
}

// splitSpaces splits v at whitespace outside parentheses.
func splitSpaces(v string) []string {
	var out []string
	for {
		v = strings.TrimLeft(v, " \t\r\n\f")
		if v == "" {
			return out
		}
		i := scanTo(v, " \t\r\n\f")
		out = append(out, v[:i])
		v = v[i:]
	}
}

// cssNumber evaluates a CSS number or length (in pixels: em and rem as 16px, viewport
// units as 10px), including calc(), min(), max() and clamp(); a percentage is pct per
// percent. ok is false for what it cannot tell.
func cssNumber(v string, pct float64) (float64, bool) {
	e := &cssExpr{s: strings.TrimSpace(v), pct: pct}
	x, ok := e.sum()
	e.space()
	if !ok || e.i != len(e.s) || math.IsNaN(x) || math.IsInf(x, 0) {
		return 0, false
	}
	return x, true
}

type cssExpr struct {
	s     string
	i     int
	pct   float64
	depth int
}

func isCSSSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }

func (e *cssExpr) space() {
	for e.i < len(e.s) && isCSSSpace(e.s[e.i]) {
		e.i++
	}
}

func (e *cssExpr) sum() (float64, bool) {
	x, ok := e.product()
	for ok {
		save := e.i
		e.space()
		// In calc(), + and - are operators only with whitespace on both sides.
		if e.i > save && e.i+1 < len(e.s) && (e.s[e.i] == '+' || e.s[e.i] == '-') && isCSSSpace(e.s[e.i+1]) {
			op := e.s[e.i]
			e.i++
			y, ok2 := e.product()
			if !ok2 {
				return 0, false
			}
			if op == '+' {
				x += y
			} else {
				x -= y
			}
			continue
		}
		e.i = save
		break
	}
	return x, ok
}

func (e *cssExpr) product() (float64, bool) {
	x, ok := e.factor()
	for ok {
		save := e.i
		e.space()
		if e.i < len(e.s) && (e.s[e.i] == '*' || e.s[e.i] == '/') {
			op := e.s[e.i]
			e.i++
			y, ok2 := e.factor()
			if !ok2 || op == '/' && y == 0 {
				return 0, false
			}
			if op == '*' {
				x *= y
			} else {
				x /= y
			}
			continue
		}
		e.i = save
		break
	}
	return x, ok
}

var cssUnits = map[string]float64{
	"": 1, "px": 1, "pt": 4.0 / 3, "pc": 16, "in": 96, "cm": 37.8, "mm": 3.78, "q": 0.945,
	"em": 16, "rem": 16, "ex": 8, "rex": 8, "ch": 8, "rch": 8, "cap": 11, "ic": 16, "lh": 19, "rlh": 19,
	"vw": 10, "vh": 10, "vmin": 10, "vmax": 10, "vi": 10, "vb": 10,
	"svw": 10, "svh": 10, "lvw": 10, "lvh": 10, "dvw": 10, "dvh": 10,
	"cqw": 10, "cqh": 10, "cqi": 10, "cqb": 10, "cqmin": 10, "cqmax": 10,
}

func (e *cssExpr) factor() (float64, bool) {
	e.space()
	if e.depth > 32 || e.i >= len(e.s) {
		return 0, false
	}
	if e.s[e.i] == '(' {
		e.i++
		e.depth++
		x, ok := e.sum()
		e.depth--
		e.space()
		if !ok || e.i >= len(e.s) || e.s[e.i] != ')' {
			return 0, false
		}
		e.i++
		return x, true
	}
	j := e.i
	for j < len(e.s) && (e.s[j] >= 'a' && e.s[j] <= 'z' || e.s[j] == '-') {
		j++
	}
	if j > e.i && j < len(e.s) && e.s[j] == '(' {
		name := e.s[e.i:j]
		e.i = j + 1
		e.depth++
		var args []float64
		for {
			x, ok := e.sum()
			if !ok {
				return 0, false
			}
			args = append(args, x)
			e.space()
			if e.i < len(e.s) && e.s[e.i] == ',' {
				e.i++
				continue
			}
			break
		}
		e.depth--
		if e.i >= len(e.s) || e.s[e.i] != ')' {
			return 0, false
		}
		e.i++
		switch name {
		case "calc", "-webkit-calc", "-moz-calc":
			if len(args) == 1 {
				return args[0], true
			}
		case "min":
			m := args[0]
			for _, a := range args[1:] {
				m = min(m, a)
			}
			return m, true
		case "max":
			m := args[0]
			for _, a := range args[1:] {
				m = max(m, a)
			}
			return m, true
		case "clamp":
			if len(args) == 3 {
				return max(args[0], min(args[1], args[2])), true
			}
		}
		return 0, false
	}
	x, end, ok := numberAt(e.s, e.i)
	if !ok {
		return 0, false
	}
	e.i = end
	if e.i < len(e.s) && e.s[e.i] == '%' {
		e.i++
		return x * e.pct, true
	}
	u := e.i
	for e.i < len(e.s) && (e.s[e.i] >= 'a' && e.s[e.i] <= 'z' || e.s[e.i] >= 'A' && e.s[e.i] <= 'Z') {
		e.i++
	}
	f, ok := cssUnits[strings.ToLower(e.s[u:e.i])]
	return x * f, ok
}

// numberAt reads the CSS number at s[i:] (sign, digits, fraction, exponent): its value and
// where it ends.
func numberAt(s string, i int) (x float64, end int, ok bool) {
	start := i
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
		digits++
	}
	if i+1 < len(s) && s[i] == '.' && s[i+1] >= '0' && s[i+1] <= '9' {
		i++
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			digits++
		}
	}
	if digits == 0 {
		return 0, 0, false
	}
	if k := i; k+1 < len(s) && (s[k] == 'e' || s[k] == 'E') {
		k++
		if k+1 < len(s) && (s[k] == '+' || s[k] == '-') {
			k++
		}
		if k < len(s) && s[k] >= '0' && s[k] <= '9' {
			for k < len(s) && s[k] >= '0' && s[k] <= '9' {
				k++
			}
			i = k
		}
	}
	x, err := strconv.ParseFloat(s[start:i], 64)
	return x, i, err == nil
}

// cssTransparent reports a colour that shows nothing: transparent, or an alpha of 5% or
// less.
func cssTransparent(v string) bool {
	v = strings.ToLower(strings.TrimSpace(v))
	if v == "transparent" {
		return true
	}
	if strings.HasPrefix(v, "#") && (len(v) == 5 || len(v) == 9) {
		a, err := strconv.ParseUint(v[len(v)-(len(v)-1)/4:], 16, 8)
		if len(v) == 5 {
			a *= 17
		}
		return err == nil && a <= 12
	}
	if (strings.HasPrefix(v, "rgb") || strings.HasPrefix(v, "hsl")) && strings.HasSuffix(v, ")") {
		inner := v[strings.IndexByte(v, '(')+1 : len(v)-1]
		parts := strings.FieldsFunc(inner, func(r rune) bool { return r == ',' || r == ' ' || r == '/' })
		if len(parts) == 4 {
			a, ok := cssNumber(parts[3], 0.01)
			return ok && a <= 0.05
		}
	}
	return false
}

// cssColor returns a colour as RRGGBB, or "" when it cannot tell (or it is transparent).
func cssColor(v string) string {
	v = strings.ToLower(strings.TrimSpace(v))
	if cssTransparent(v) {
		return ""
	}
	if i := strings.Index(v, "rgb"); i >= 0 {
		v = v[i:] // "background: url(x) rgb(...)"
		if j := strings.IndexByte(v, ')'); j >= 0 {
			v = v[:j+1]
		}
	} else if i := strings.Index(v, "hsl"); i >= 0 {
		v = v[i:]
		if j := strings.IndexByte(v, ')'); j >= 0 {
			v = v[:j+1]
		}
	} else if f := strings.Fields(v); len(f) > 0 {
		v = f[0] // "background: #fff url(x)"
		for _, x := range f {
			if strings.HasPrefix(x, "#") {
				v = x
			}
		}
	}
	if cssTransparent(v) {
		return ""
	}
	open := strings.IndexByte(v, '(')
	if (strings.HasPrefix(v, "rgb") || strings.HasPrefix(v, "hsl")) && open >= 0 {
		inner := strings.TrimSuffix(v[open+1:], ")")
		parts := strings.FieldsFunc(inner, func(r rune) bool { return r == ',' || r == ' ' || r == '/' })
		if len(parts) < 3 {
			return ""
		}
		var out [3]float64
		if strings.HasPrefix(v, "hsl") {
			hue, ok := cssAngle(parts[0])
			s, ok2 := cssNumber(parts[1], 0.01)
			l, ok3 := cssNumber(parts[2], 0.01)
			if !ok || !ok2 || !ok3 {
				return ""
			}
			out = hslRGB(hue, s, l)
		} else {
			for i := 0; i < 3; i++ {
				f, ok := cssNumber(parts[i], 2.55)
				if !ok {
					return ""
				}
				out[i] = f
			}
		}
		var c [3]int
		for i, f := range out {
			c[i] = max(0, min(255, int(f)))
		}
		return fmt.Sprintf("%02x%02x%02x", c[0], c[1], c[2])
	}
	switch v {
	case "white":
		return "ffffff"
	case "black":
		return "000000"
	case "snow", "ghostwhite", "whitesmoke", "ivory", "floralwhite", "seashell", "mintcream", "azure", "aliceblue":
		return "f8f8f8"
	case "red":
		return "ff0000"
	case "silver":
		return "c0c0c0"
	case "gray", "grey":
		return "808080"
	}
	if strings.HasPrefix(v, "#") && (len(v) == 9 || len(v) == 5) {
		v = v[:len(v)-(len(v)-1)/4] // #RRGGBBAA, #RGBA: the alpha is not transparent here
	}
	if _, _, _, ok := hexRGB(v); ok {
		return strings.TrimPrefix(v, "#")
	}
	return ""
}

// cssAngle returns an angle in degrees.
func cssAngle(v string) (float64, bool) {
	for _, u := range []struct {
		suffix string
		deg    float64
	}{{"deg", 1}, {"grad", 0.9}, {"rad", 180 / math.Pi}, {"turn", 360}} {
		if strings.HasSuffix(v, u.suffix) {
			f, err := strconv.ParseFloat(strings.TrimSuffix(v, u.suffix), 64)
			return f * u.deg, err == nil
		}
	}
	f, err := strconv.ParseFloat(v, 64)
	return f, err == nil
}

// hslRGB converts a hue in degrees and saturation and lightness in 0..1 to RGB in 0..255.
func hslRGB(h, s, l float64) [3]float64 {
	h = math.Mod(h, 360)
	if h < 0 {
		h += 360
	}
	s, l = max(0, min(1, s)), max(0, min(1, l))
	f := func(n float64) float64 {
		k := math.Mod(n+h/30, 12)
		a := s * min(l, 1-l)
		return 255 * (l - a*max(-1, min(k-3, 9-k, 1)))
	}
	return [3]float64{f(0), f(8), f(4)}
}
