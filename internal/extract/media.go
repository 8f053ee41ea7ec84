package extract

import "strings"

// This file evaluates media queries (Media Queries levels 3 and 4) against one nominal
// desktop screen, so that rules a browser on such a screen applies are certain and those
// it ignores are left out, rather than every media-conditioned rule being "uncertain"
// (which marks the text that responsive designs hide on small screens as hidden).
//
// The screen: media type screen, viewport and device 1280x800 CSS px (landscape),
// 96 dpi (1dppx), 8 bits of colour per component, no grid, hover and a fine pointer,
// light colour scheme, no reduced motion or contrast preference, no forced colours,
// scripting enabled, display-mode browser, fast update, 1em = 1rem = 16px.
//
// A query is decided only when every part of it is read exactly; anything else (an
// unknown feature or value, calc(), a function token, syntax this reader does not follow)
// is mediaUnknown, and its rules stay uncertain: they can hide text, never show it.

// mediaResult is what a media query gives: a three-valued (Kleene) logic ordered so that
// "and" is the minimum, "or" the maximum and "not" the reverse.
type mediaResult int8

const (
	mediaNo mediaResult = iota
	mediaUnknown
	mediaYes
)

func (r mediaResult) not() mediaResult { return mediaYes - r }

// The nominal screen.
const (
	screenWidth  = 1280.0
	screenHeight = 800.0
	screenDPPX   = 1.0
	screenColor  = 8.0
	fontSizePx   = 16.0
)

// mediaKeywords holds the discrete features: the screen's value first, then the other
// values the feature takes. A value outside the list is unknown.
var mediaKeywords = map[string][]string{
	"orientation":            {"landscape", "portrait"},
	"hover":                  {"hover", "none"},
	"any-hover":              {"hover", "none"},
	"pointer":                {"fine", "coarse", "none"},
	"any-pointer":            {"fine", "coarse", "none"},
	"prefers-color-scheme":   {"light", "dark"},
	"prefers-reduced-motion": {"no-preference", "reduce"},
	"prefers-contrast":       {"no-preference", "more", "less", "custom"},
	"forced-colors":          {"none", "active"},
	"scripting":              {"enabled", "initial-only", "none"},
	"display-mode":           {"browser", "fullscreen", "standalone", "minimal-ui", "picture-in-picture", "window-controls-overlay"},
	"update":                 {"fast", "slow", "none"},
}

// mediaFalse are the discrete values false in a boolean context, as in (hover).
var mediaFalse = map[string]bool{"none": true, "no-preference": true}

// mediaRange holds the range features: their kind and the screen's value.
var mediaRange = map[string]struct {
	kind  byte // 'l' length, 'r' ratio, 'i' integer, 'd' resolution
	value float64
}{
	"width":                      {'l', screenWidth},
	"height":                     {'l', screenHeight},
	"device-width":               {'l', screenWidth},
	"device-height":              {'l', screenHeight},
	"aspect-ratio":               {'r', screenWidth / screenHeight},
	"device-aspect-ratio":        {'r', screenWidth / screenHeight},
	"resolution":                 {'d', screenDPPX},
	"color":                      {'i', screenColor},
	"color-index":                {'i', 0},
	"monochrome":                 {'i', 0},
	"-webkit-device-pixel-ratio": {'n', screenDPPX},
}

// mediaTypes are the media types; only all and screen match. Other identifiers are
// valid types that match nothing.
var mediaTypes = map[string]bool{"all": true, "screen": true}

// mediaReserved may not be media types.
var mediaReserved = map[string]bool{"and": true, "or": true, "not": true, "only": true, "layer": true}

// mediaList evaluates a media query list (a media attribute, an @media prelude, the
// conditions of an @import): true if any query is. An empty list is true.
func mediaList(s string) mediaResult {
	s = strings.ToLower(strings.TrimFunc(s, isHTMLSpace))
	if s == "" {
		return mediaYes
	}
	out := mediaNo
	for {
		i := scanTo(s, ",")
		out = max(out, mediaQuery(s[:i]))
		if i == len(s) {
			return out
		}
		s = s[i+1:]
	}
}

// mediaQuery evaluates one query of a list (lower case).
func mediaQuery(s string) mediaResult {
	toks, ok := mediaTokens(s)
	if !ok || len(toks) == 0 {
		return mediaUnknown
	}
	if toks[0][0] == '(' || toks[0] == "not" && len(toks) == 2 && toks[1][0] == '(' {
		return mediaCondition(toks, true)
	}
	neg := false
	switch toks[0] {
	case "not":
		neg = true
		toks = toks[1:]
	case "only":
		toks = toks[1:]
	}
	if len(toks) == 0 || toks[0][0] == '(' || mediaReserved[toks[0]] {
		return mediaUnknown
	}
	r := mediaNo
	if mediaTypes[toks[0]] {
		r = mediaYes
	}
	switch {
	case len(toks) == 1:
	case toks[1] == "and" && len(toks) > 2:
		r = min(r, mediaCondition(toks[2:], false))
	default:
		return mediaUnknown
	}
	if neg {
		return r.not()
	}
	return r
}

// mediaTokens splits a query into words and parenthesised groups (with their parentheses).
// ok is false for anything else: strings, other brackets, function tokens (a word right
// before '('), an unbalanced ')'.
func mediaTokens(s string) (toks []string, ok bool) {
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case isHTMLSpace(rune(c)):
			i++
		case c == '(':
			j := i + 1 + scanTo(s[i+1:], ")")
			if j == len(s) {
				return nil, false
			}
			toks = append(toks, s[i:j+1])
			i = j + 1
		case isNameByte(c):
			j := i
			for j < len(s) && isNameByte(s[j]) {
				j++
			}
			if j < len(s) && s[j] == '(' {
				return nil, false
			}
			toks = append(toks, s[i:j])
			i = j
		default:
			return nil, false
		}
	}
	return toks, true
}

// mediaCondition evaluates a condition: "not" with one group, or groups joined by "and"
// or (where allowed) "or", not mixed.
func mediaCondition(toks []string, allowOr bool) mediaResult {
	if toks[0] == "not" {
		if len(toks) != 2 || toks[1][0] != '(' {
			return mediaUnknown
		}
		return mediaInParens(toks[1]).not()
	}
	if toks[0][0] != '(' || len(toks)%2 == 0 {
		return mediaUnknown
	}
	op := ""
	r := mediaInParens(toks[0])
	for i := 1; i < len(toks); i += 2 {
		if toks[i+1][0] != '(' || op != "" && toks[i] != op {
			return mediaUnknown
		}
		op = toks[i]
		switch {
		case op == "and":
			r = min(r, mediaInParens(toks[i+1]))
		case op == "or" && allowOr:
			r = max(r, mediaInParens(toks[i+1]))
		default:
			return mediaUnknown
		}
	}
	return r
}

// mediaInParens evaluates a group: a nested condition or a media feature.
func mediaInParens(group string) mediaResult {
	inner := strings.TrimFunc(group[1:len(group)-1], isHTMLSpace)
	if toks, ok := mediaTokens(inner); ok && len(toks) > 0 && (toks[0][0] == '(' || toks[0] == "not") {
		return mediaCondition(toks, true)
	}
	return mediaFeature(inner)
}

// mediaFeature evaluates "name: value", "name" or a range ("name >= value",
// "value < name <= value").
func mediaFeature(s string) mediaResult {
	if i := strings.IndexByte(s, ':'); i >= 0 {
		name, value := strings.TrimFunc(s[:i], isHTMLSpace), strings.TrimFunc(s[i+1:], isHTMLSpace)
		if !isFeatureName(name) || value == "" {
			return mediaUnknown
		}
		if vals, ok := mediaKeywords[name]; ok {
			return mediaKeyword(vals, value)
		}
		op := "="
		if n, ok := strings.CutPrefix(name, "-webkit-"); ok {
			if rest, ok := strings.CutPrefix(n, "min-"); ok {
				name, op = "-webkit-"+rest, ">="
			} else if rest, ok := strings.CutPrefix(n, "max-"); ok {
				name, op = "-webkit-"+rest, "<="
			}
		} else if rest, ok := strings.CutPrefix(name, "min-"); ok {
			name, op = rest, ">="
		} else if rest, ok := strings.CutPrefix(name, "max-"); ok {
			name, op = rest, "<="
		}
		return mediaCompare(name, op, value, false)
	}
	if isFeatureName(s) {
		if vals, ok := mediaKeywords[s]; ok {
			return mediaBool(!mediaFalse[vals[0]])
		}
		if f, ok := mediaRange[s]; ok {
			return mediaBool(f.value != 0)
		}
		return mediaUnknown
	}
	return mediaRangeSyntax(s)
}

// mediaRangeSyntax evaluates the level 4 range forms.
func mediaRangeSyntax(s string) mediaResult {
	var parts, ops []string
	for {
		i := strings.IndexAny(s, "<>=")
		if i < 0 {
			parts = append(parts, strings.TrimFunc(s, isHTMLSpace))
			break
		}
		j := i + 1
		if s[i] != '=' && j < len(s) && s[j] == '=' {
			j++
		}
		parts, ops = append(parts, strings.TrimFunc(s[:i], isHTMLSpace)), append(ops, s[i:j])
		s = s[j:]
	}
	switch len(ops) {
	case 1:
		if _, ok := mediaRange[parts[0]]; ok {
			return mediaCompare(parts[0], ops[0], parts[1], false)
		}
		return mediaCompare(parts[1], ops[0], parts[0], true)
	case 2:
		// value < name < value: both "<" or both ">" (with or without "=").
		if ops[0][0] == '=' || ops[0][0] != ops[1][0] {
			return mediaUnknown
		}
		return min(mediaCompare(parts[1], ops[0], parts[0], true), mediaCompare(parts[1], ops[1], parts[2], false))
	}
	return mediaUnknown
}

// mediaCompare evaluates the range feature name op value (value op name when reversed).
func mediaCompare(name, op, value string, reversed bool) mediaResult {
	f, ok := mediaRange[name]
	if !ok {
		return mediaUnknown
	}
	v, ok := mediaValue(f.kind, value)
	if !ok {
		return mediaUnknown
	}
	a, b := f.value, v
	if reversed {
		a, b = b, a
	}
	switch op {
	case "=":
		return mediaBool(a == b)
	case "<":
		return mediaBool(a < b)
	case "<=":
		return mediaBool(a <= b)
	case ">":
		return mediaBool(a > b)
	case ">=":
		return mediaBool(a >= b)
	}
	return mediaUnknown
}

// mediaValue reads a value of a range feature of kind, in px, dppx or as a number.
func mediaValue(kind byte, s string) (float64, bool) {
	if kind == 'r' {
		num, den, ok := strings.Cut(s, "/")
		a, unitA, okA := mediaNumber(strings.TrimFunc(num, isHTMLSpace))
		if !okA || unitA != "" || a < 0 {
			return 0, false
		}
		if !ok {
			return a, true
		}
		b, unitB, okB := mediaNumber(strings.TrimFunc(den, isHTMLSpace))
		if !okB || unitB != "" || b <= 0 {
			return 0, false
		}
		return a / b, true
	}
	v, unit, ok := mediaNumber(s)
	if !ok {
		return 0, false
	}
	switch kind {
	case 'l':
		scale, ok := map[string]float64{
			"px": 1, "em": fontSizePx, "rem": fontSizePx, "in": 96, "cm": 96 / 2.54, "mm": 96 / 25.4,
			"q": 96 / 101.6, "pt": 96.0 / 72, "pc": 16,
		}[unit]
		if unit == "" && v == 0 {
			return 0, true
		}
		return v * scale, ok && v >= 0
	case 'd':
		per, ok := map[string]float64{"dppx": 1, "x": 1, "dpi": 96, "dpcm": 96 / 2.54}[unit]
		return v / per, ok && v >= 0
	case 'i':
		return v, unit == "" && v == float64(int64(v))
	case 'n':
		return v, unit == ""
	}
	return 0, false
}

// mediaNumber splits a CSS number and the unit that follows it.
func mediaNumber(s string) (v float64, unit string, ok bool) {
	v, end, ok := numberAt(s, 0)
	if !ok {
		return 0, "", false
	}
	unit = s[end:]
	for j := 0; j < len(unit); j++ {
		if unit[j] < 'a' || unit[j] > 'z' {
			return 0, "", false
		}
	}
	return v, unit, true
}

// mediaKeyword evaluates a discrete feature whose values are vals (the screen's first).
func mediaKeyword(vals []string, value string) mediaResult {
	for i, v := range vals {
		if v == value {
			return mediaBool(i == 0)
		}
	}
	return mediaUnknown
}

func isFeatureName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= 'a' && s[i] <= 'z' || s[i] == '-') {
			return false
		}
	}
	return true
}

func mediaBool(b bool) mediaResult {
	if b {
		return mediaYes
	}
	return mediaNo
}

// importMedia evaluates the conditions that follow an @import's URL: layer() and
// supports() make its rules uncertain at best, and the media query list decides.
func importMedia(cond string) mediaResult {
	s := strings.ToLower(strings.TrimFunc(cond, isHTMLSpace))
	best := mediaYes
	for _, fn := range []string{"layer", "supports("} {
		if !strings.HasPrefix(s, fn) {
			continue
		}
		rest := s[len(fn):]
		switch {
		case fn == "supports(" || strings.HasPrefix(rest, "("):
			if fn == "layer" {
				rest = rest[1:]
			}
			i := scanTo(rest, ")")
			if i == len(rest) {
				return mediaUnknown
			}
			rest = rest[i+1:]
		case rest != "" && !isHTMLSpace(rune(rest[0])):
			continue // a media type that starts with "layer"
		}
		s, best = strings.TrimFunc(rest, isHTMLSpace), mediaUnknown
	}
	return min(best, mediaList(s))
}
