package cli

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/model/anthropic"
	"github.com/keepup/keepup/internal/model/openai"
	"github.com/keepup/keepup/internal/model/script"
)

// DefaultAnthropicModel is used when only ANTHROPIC_API_KEY is set.
const DefaultAnthropicModel = "claude-sonnet-4-5"

// defaultModelSpec: KEEPUP_MODEL, else anthropic when ANTHROPIC_API_KEY is set, else "".
func defaultModelSpec(getenv func(string) string) string {
	if s := strings.TrimSpace(getenv("KEEPUP_MODEL")); s != "" {
		return s
	}
	if getenv("ANTHROPIC_API_KEY") != "" {
		return "anthropic:" + DefaultAnthropicModel
	}
	return ""
}

// openModel opens a provider from a model SPEC and returns it with its context window.
func openModel(spec string, getenv func(string) string, set *settings) (model.Provider, int, error) {
	kind, name, ok := strings.Cut(spec, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return nil, 0, fmt.Errorf("model spec %q: want anthropic:MODEL, openai:MODEL, ollama:MODEL or script:FILE", spec)
	}
	window := set.contextWindows[spec]
	var p model.Provider
	var err error
	switch kind {
	case "anthropic":
		key := getenv("ANTHROPIC_API_KEY")
		if key == "" {
			return nil, 0, fmt.Errorf("model %s: ANTHROPIC_API_KEY is not set", spec)
		}
		p, err = anthropic.New(anthropic.Config{Model: name, APIKey: key, BaseURL: getenv("ANTHROPIC_BASE_URL")})
	case "openai":
		base := getenv("OPENAI_BASE_URL")
		key := getenv("OPENAI_API_KEY")
		if key == "" && base == "" {
			return nil, 0, fmt.Errorf("model %s: OPENAI_API_KEY is not set (or set OPENAI_BASE_URL for a local server)", spec)
		}
		p, err = openai.New(openai.Config{Name: "openai", Model: name, APIKey: key, BaseURL: base})
	case "ollama":
		base := getenv("OLLAMA_BASE_URL")
		if base == "" {
			base = "http://127.0.0.1:11434/v1"
		}
		p, err = openai.New(openai.Config{Name: "ollama", Model: name, BaseURL: base})
		if window == 0 {
			window = 32_000
		}
	case "script":
		s, lerr := script.Load(name)
		if lerr != nil {
			return nil, 0, lerr
		}
		p = script.New(filepath.Base(name), s)
	default:
		return nil, 0, fmt.Errorf("unknown model provider %q in %q: want anthropic:MODEL, openai:MODEL, ollama:MODEL or script:FILE", kind, spec)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("model %s: %v", spec, err)
	}
	return p, window, nil
}
