package extract

import "testing"

// TestMediaList checks media queries against the nominal desktop screen of media.go: what
// it matches, what it does not, and what is left unknown.
func TestMediaList(t *testing.T) {
	t.Parallel()
	const yes, no, unknown = mediaYes, mediaNo, mediaUnknown
	checkMedia(t, "mediaList", mediaList, []mediaCase{
		// Media types and lists.
		{"", yes},
		{"all", yes},
		{"screen", yes},
		{"SCREEN", yes},
		{"only screen", yes},
		{"print", no},
		{"speech", no},
		{"tv", no},
		{"foo", no},
		{"not print", yes},
		{"not screen", no},
		{"not all and (monochrome)", yes},
		{"print, screen", yes},
		{"print, speech", no},
		{"print, (scan: progressive)", unknown},
		{"screen, (scan: progressive)", yes},
		{"only", unknown},
		{"not", unknown},
		{"and", unknown},
		{"only (color)", unknown},
		{"screen (color)", unknown},
		{"screen and", unknown},
		{"screen and (color) or (hover)", unknown},
		{"screen or (color)", unknown},

		// Conditions: and, or, not, nesting.
		{"(color) and (hover)", yes},
		{"(color) and (monochrome)", no},
		{"(monochrome) or (color)", yes},
		{"(monochrome) or (scan: progressive)", unknown},
		{"(color) or (scan: progressive)", yes},
		{"(monochrome) and (scan: progressive)", no},
		{"not (monochrome)", yes},
		{"not (color)", no},
		{"not (scan: progressive)", unknown},
		{"((color) and ((hover) or (monochrome)))", yes},
		{"(not (hover))", no},
		{"(color) and (hover) or (pointer)", unknown},
		{"screen and not (max-width: 700px)", yes},
		{"screen and ((max-width: 700px) or (hover: none))", no},

		// Widths and heights, min- and max-, units.
		{"(min-width: 700px)", yes},
		{"(max-width: 700px)", no},
		{"(min-width: 1280px)", yes},
		{"(min-width: 1281px)", no},
		{"(max-width: 1279.5px)", no},
		{"(width: 1280px)", yes},
		{"( MIN-WIDTH : 40EM )", yes},
		{"(min-width: 81em)", no},
		{"(min-width: 80rem)", yes},
		{"(max-width: 13.33in)", no},
		{"(min-width: 13.34in)", no},
		{"(min-width: 30cm)", yes},
		{"(min-width: 340mm)", no},
		{"(min-width: 1300Q)", yes},
		{"(min-width: 1400Q)", no},
		{"(max-width: 960pt)", yes},
		{"(max-width: 79pc)", no},
		{"(min-width: 0)", yes},
		{"(min-height: 800px)", yes},
		{"(max-height: 600px)", no},
		{"(min-device-width: 1024px)", yes},
		{"(max-device-height: 799px)", no},
		{"(min-width: 700)", unknown},
		{"(min-width: 50vw)", unknown},
		{"(min-width: calc(100px + 1em))", unknown},
		{"(min-width: -1px)", unknown},
		{"(min-width)", unknown},
		{"(width)", yes},
		{"(min-width: 700px) and (max-width: 1400px)", yes},
		{"screen and (max-width:700px)", no},
		{"screen and(max-width:700px)", unknown},

		// Level 4 range syntax.
		{"(width >= 700px)", yes},
		{"(width < 700px)", no},
		{"(width <= 1280px)", yes},
		{"(width > 1280px)", no},
		{"(width = 1280px)", yes},
		{"(700px <= width)", yes},
		{"(1300px < width)", no},
		{"(400px < width <= 1280px)", yes},
		{"(400px < width < 900px)", no},
		{"(2000px > width > 1000px)", yes},
		{"(400px < width > 900px)", unknown},
		{"(400px = width = 900px)", unknown},
		{"(width >= 700)", unknown},
		{"(hover >= 1)", unknown},
		{"(min-width >= 700px)", unknown},
		{"(width < height)", unknown},

		// Aspect ratio.
		{"(aspect-ratio: 16/10)", yes},
		{"(min-aspect-ratio: 4/3)", yes},
		{"(max-aspect-ratio: 4 / 3)", no},
		{"(min-aspect-ratio: 16/9)", no},
		{"(aspect-ratio > 1)", yes},
		{"(orientation: landscape) and (min-device-aspect-ratio: 3/2)", yes},
		{"(aspect-ratio: 16/0)", unknown},
		{"(aspect-ratio: 16px/9)", unknown},

		// Resolution.
		{"(resolution: 1dppx)", yes},
		{"(resolution: 1x)", yes},
		{"(min-resolution: 2dppx)", no},
		{"(min-resolution: 192dpi)", no},
		{"(max-resolution: 96dpi)", yes},
		{"(min-resolution: 38dpcm)", no},
		{"(min-resolution: 37dpcm)", yes},
		{"(resolution: infinite)", unknown},
		{"(-webkit-min-device-pixel-ratio: 2)", no},
		{"(-webkit-min-device-pixel-ratio: 1)", yes},
		{"(-webkit-max-device-pixel-ratio: 1.5)", yes},
		{"(-moz-min-device-pixel-ratio: 2)", unknown},

		// Colour.
		{"(color)", yes},
		{"(min-color: 8)", yes},
		{"(min-color: 10)", no},
		{"(color: 1.5)", unknown},
		{"(monochrome)", no},
		{"(monochrome: 0)", yes},
		{"(color-index)", no},

		// Discrete features.
		{"(orientation: landscape)", yes},
		{"(orientation: portrait)", no},
		{"(hover: hover)", yes},
		{"(hover: none)", no},
		{"(hover)", yes},
		{"(any-hover: hover)", yes},
		{"(pointer: fine)", yes},
		{"(pointer: coarse)", no},
		{"(any-pointer: none)", no},
		{"(prefers-color-scheme: light)", yes},
		{"(prefers-color-scheme: dark)", no},
		{"(prefers-reduced-motion: no-preference)", yes},
		{"(prefers-reduced-motion: reduce)", no},
		{"(prefers-reduced-motion)", no},
		{"(prefers-contrast: more)", no},
		{"(forced-colors: none)", yes},
		{"(forced-colors: active)", no},
		{"(forced-colors)", no},
		{"(scripting: enabled)", yes},
		{"(scripting: none)", no},
		{"(display-mode: browser)", yes},
		{"(display-mode: standalone)", no},
		{"(update: fast)", yes},
		{"(update)", yes},
		{"(hover: sideways)", unknown},
		{"(min-hover: hover)", unknown},
		{"(orientation: 1)", unknown},

		// What this reader does not follow.
		{"(scan: progressive)", unknown},
		{"(grid)", unknown},
		{"(color-gamut: p3)", unknown},
		{"(min-width: 700px", unknown},
		{"min-width: 700px)", unknown},
		{"[min-width: 700px]", unknown},
		{"screen;", unknown},
		{"'screen'", unknown},
		{"(min-width: 700px) {", unknown},
	})
}

type mediaCase struct {
	query string
	want  mediaResult
}

func checkMedia(t *testing.T, name string, eval func(string) mediaResult, cases []mediaCase) {
	t.Helper()
	for _, c := range cases {
		if got := eval(c.query); got != c.want {
			t.Errorf("%s(%q) = %d, want %d", name, c.query, got, c.want)
		}
	}
}

// TestImportMedia checks the conditions after an @import's URL: layer() and supports() leave
// the sheet uncertain at best; the media list decides the rest.
func TestImportMedia(t *testing.T) {
	t.Parallel()
	checkMedia(t, "importMedia", importMedia, []mediaCase{
		{"", mediaYes},
		{" screen and (min-width: 700px)", mediaYes},
		{"print", mediaNo},
		{"(max-width: 700px)", mediaNo},
		{"layer", mediaUnknown},
		{"layer(base)", mediaUnknown},
		{"LAYER(base) screen", mediaUnknown},
		{"layer(base) print", mediaNo},
		{"supports(display: grid)", mediaUnknown},
		{"supports(display: grid) print", mediaNo},
		{"layer supports(display: grid) (prefers-color-scheme: dark)", mediaNo},
		{"layer(a) supports(display: grid) screen", mediaUnknown},
		{"layer(a", mediaUnknown},
		{"layered", mediaNo}, // a media type that matches nothing
	})
}

// TestHTMLMediaQueries checks media queries in documents: rules the nominal screen matches
// can hide and show text, those it does not are ignored, and those it cannot decide can
// hide but never show.
func TestHTMLMediaQueries(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, doc string
		hidden    bool
	}{
		{"mobile-only-hiding", `<style>@media (max-width: 700px){.x{display:none}}</style><p class="x">SECRET</p>`, false},
		{"mobile-only-hiding-range", `<style>@media screen and (width < 700px){.x{display:none}}</style><p class="x">SECRET</p>`, false},
		{"desktop-hiding", `<style>@media (min-width: 1000px){.x{display:none}}</style><p class="x">SECRET</p>`, true},
		{"unknown-feature-hiding", `<style>@media (scan: interlace){.x{display:none}}</style><p class="x">SECRET</p>`, true},
		{"print-hiding", `<style>@media print{.x{display:none}}</style><p class="x">SECRET</p>`, false},
		{"print-style-element", `<style media="print">.x{display:none}</style><p class="x">SECRET</p>`, false},
		{"dark-only-hiding", `<style>@media (prefers-color-scheme: dark){.x{color:#fff}}</style><p class="x">SECRET</p>`, false},
		{"desktop-unhides", `<style>.x{display:none} @media (min-width: 1000px){.x{display:block}}</style><p class="x">SECRET</p>`, false},
		{"desktop-style-element-unhides", `<style>.x{display:none}</style><style media="screen and (hover: hover)">.x{display:block}</style><p class="x">SECRET</p>`, false},
		{"mobile-cannot-unhide", `<style>.x{display:none} @media (max-width: 700px){.x{display:block}}</style><p class="x">SECRET</p>`, true},
		{"unknown-cannot-unhide", `<style>.x{display:none} @media (scan: interlace){.x{display:block}}</style><p class="x">SECRET</p>`, true},
		{"function-token-cannot-unhide", `<style>.x{display:none} @media screen and(min-width: 1px){.x{display:block}}</style><p class="x">SECRET</p>`, true},
		{"nested-media", `<style>@media screen{@media (max-width: 700px){.x{display:none}}}</style><p class="x">SECRET</p>`, false},
		{"nested-in-supports", `<style>@supports (display: grid){@media print{.x{display:none}}}</style><p class="x">SECRET</p>`, false},
		{"supports-cannot-unhide", `<style>.x{display:none} @supports (display: grid){@media screen{.x{display:block}}}</style><p class="x">SECRET</p>`, true},
		{"nesting-media", `<style>.x{@media (max-width: 700px){display:none}}</style><p class="x">SECRET</p>`, false},
		{"nesting-media-desktop", `<style>.x{display:none; @media (min-width: 700px){display:block}}</style><p class="x">SECRET</p>`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			checkHidden(t, c.doc, c.hidden)
		})
	}
}
