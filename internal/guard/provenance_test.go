package guard

import (
	"reflect"
	"testing"
)

func TestJoin(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		a, b Label
		want Label
	}{
		{"trusted stays trusted", User(), Label{Trust: Trusted, Sources: []string{"keepup"}}, Label{Trust: Trusted, Sources: []string{"keepup", "user"}}},
		{"untrusted taints", User(), From("file:a/x.txt"), Label{Trust: Untrusted, Sources: []string{"file:a/x.txt", "user"}}},
		{"union without duplicates", From("file:a", "web:b"), From("file:a"), Label{Trust: Untrusted, Sources: []string{"file:a", "web:b"}}},
	}
	for _, c := range cases {
		if got := Join(c.a, c.b); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: Join = %+v, want %+v", c.name, got, c.want)
		}
	}
	if got := Join(User(), From("file:a")).UntrustedSources(); !reflect.DeepEqual(got, []string{"file:a"}) {
		t.Errorf("UntrustedSources = %v", got)
	}
}
