package scope

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseGrant(t *testing.T) {
	t.Parallel()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		spec    string
		want    Grant
		wantErr string // substring; "" means no error
	}{
		{spec: "/data/reports", want: Grant{Name: "reports", Path: "/data/reports", Mode: RW}},
		{spec: "/data/reports:ro", want: Grant{Name: "reports", Path: "/data/reports", Mode: RO}},
		{spec: "/data/reports:rw", want: Grant{Name: "reports", Path: "/data/reports", Mode: RW}},
		{spec: "q3=/data/reports:ro", want: Grant{Name: "q3", Path: "/data/reports", Mode: RO}},
		{spec: "q3=/data/reports/", want: Grant{Name: "q3", Path: "/data/reports", Mode: RW}},
		{spec: "/data//x/../reports/.", want: Grant{Name: "reports", Path: "/data/reports", Mode: RW}},
		{spec: "rel/dir", want: Grant{Name: "dir", Path: filepath.Join(wd, "rel/dir"), Mode: RW}},
		{spec: "n=rel:ro", want: Grant{Name: "n", Path: filepath.Join(wd, "rel"), Mode: RO}},
		{spec: "/data/a=b", want: Grant{Name: "a-b", Path: "/data/a=b", Mode: RW}},
		{spec: "/home/me/My Documents", want: Grant{Name: "My-Documents", Path: "/home/me/My Documents", Mode: RW}},
		{spec: "/home/me/.config", want: Grant{Name: "config", Path: "/home/me/.config", Mode: RW}},
		{spec: "/x/v1.2_final-b", want: Grant{Name: "v1.2_final-b", Path: "/x/v1.2_final-b", Mode: RW}},
		{spec: "", wantErr: "no folder path"},
		{spec: ":ro", wantErr: "no folder path"},
		{spec: "n=", wantErr: "no folder path"},
		{spec: "/data/reports:rx", wantErr: `unknown access mode "rx"`},
		{spec: "bad name=/data", wantErr: `name "bad name" is not valid`},
		{spec: "-x=/data", wantErr: `name "-x" is not valid`},
		{spec: "=/data", wantErr: `name "" is not valid`},
		{spec: "/", wantErr: `cannot name a grant after "/"`},
		{spec: "/data/...", wantErr: "cannot name a grant"},
		{spec: "/data/\x00x", wantErr: "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ParseGrant(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseGrant(%q) error = %v, want one containing %q", tt.spec, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.spec)) || strings.Contains(err.Error(), "\n") {
					t.Errorf("error %q should be one line naming the spec", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseGrant(%q): %v", tt.spec, err)
			}
			if got != tt.want {
				t.Errorf("ParseGrant(%q) = %+v, want %+v", tt.spec, got, tt.want)
			}
		})
	}
}
