package scope

import (
	"crypto/rand"
	_ "embed"
	"math/big"
	"strings"
)

var (
	//go:embed words/adjectives.txt
	adjectivesTxt string
	//go:embed words/surnames.txt
	surnamesTxt string

	adjectives = strings.Fields(adjectivesTxt)
	surnames   = strings.Fields(surnamesTxt)
)

// NewID returns a random session id in the style of Docker's container names: two different
// adjectives and a scientist's surname, "brave-loving-maxwell". The words come from crypto/rand;
// there are about 2.6 million ids, enough to tell sessions apart on one machine (callers that
// need uniqueness check for a clash).
func NewID() string {
	a := pick(len(adjectives))
	b := pick(len(adjectives) - 1)
	if b >= a {
		b++ // a different adjective
	}
	return adjectives[a] + "-" + adjectives[b] + "-" + surnames[pick(len(surnames))]
}

func pick(n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		panic("scope: crypto/rand failed: " + err.Error()) // crypto/rand does not fail on supported systems
	}
	return int(v.Int64())
}
