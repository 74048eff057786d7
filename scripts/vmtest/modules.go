package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// moduleSuffixes are the module file names Debian kernels use: plain .ko up
// to bookworm, .ko.xz from trixie on; the others cost nothing to accept.
var moduleSuffixes = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// preparedModule is a module ready to be packed: decompressed on the host,
// because finit_module's in-kernel decompression only exists from 6.4 on and
// may not be configured.
type preparedModule struct {
	Name string
	// File is the decompressed .ko in the work directory.
	File string
	// GuestPath is where the guest finds it.
	GuestPath string
}

// moduleIndex knows the modules of one extracted kernel.
type moduleIndex struct {
	modDir  string            // extracted lib/modules/<release>
	files   map[string]string // normalised name -> path relative to modDir
	builtin map[string]bool
	deps    map[string][]string // from modules.dep when the package has one

	// aliasCache is where the alias index is kept between runs; aliases is
	// loaded from it, or built, the first time a soft dependency names an
	// alias instead of a module.
	aliasCache string
	aliases    map[string][]string // alias pattern -> modules
}

// normModName makes "sch-ingress" and "sch_ingress" the same module, as the
// kernel does.
func normModName(s string) string { return strings.ReplaceAll(s, "-", "_") }

func modNameFromPath(p string) (string, bool) {
	base := filepath.Base(p)
	for _, suf := range moduleSuffixes {
		if strings.HasSuffix(base, suf) {
			return normModName(strings.TrimSuffix(base, suf)), true
		}
	}
	return "", false
}

func newModuleIndex(modDir, aliasCache string) (*moduleIndex, error) {
	idx := &moduleIndex{modDir: modDir, aliasCache: aliasCache, files: map[string]string{}, builtin: map[string]bool{}}
	err := filepath.WalkDir(modDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if name, ok := modNameFromPath(p); ok {
			rel, _ := filepath.Rel(modDir, p)
			idx.files[name] = rel
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("indexing modules in %s: %w", modDir, err)
	}
	if b, err := os.ReadFile(filepath.Join(modDir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			if name, ok := modNameFromPath(l); ok {
				idx.builtin[name] = true
			}
		}
	}
	// Debian generates modules.dep with depmod at install time, so an
	// extracted package normally has none; .modinfo "depends=" (what depmod
	// itself would use) fills the gap below.
	if b, err := os.ReadFile(filepath.Join(modDir, "modules.dep")); err == nil {
		idx.deps = map[string][]string{}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			mod, deps, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			name, _ := modNameFromPath(mod)
			// An entry without dependencies still counts as known.
			list := []string{}
			for _, d := range strings.Fields(deps) {
				if dn, ok := modNameFromPath(d); ok {
					list = append(list, dn)
				}
			}
			idx.deps[name] = list
		}
	}
	return idx, nil
}

// prepare resolves names with their dependencies (dependencies first),
// decompresses them below outDir and reports per requested module what was
// done. A module that is built in or absent is a note, not an error: the
// payload is the judge of what it needs.
func (idx *moduleIndex) prepare(names []string, release, outDir string) ([]preparedModule, []string, error) {
	var (
		order []preparedModule
		notes []string
		state = map[string]int{} // 1 visiting, 2 done
	)
	var visit func(name string, requested bool) error
	visit = func(name string, requested bool) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("module dependency cycle at %s", name)
		case 2:
			return nil
		}
		if idx.builtin[name] {
			state[name] = 2
			if requested {
				notes = append(notes, fmt.Sprintf("module %s is built in", name))
			}
			return nil
		}
		rel, ok := idx.files[name]
		if !ok {
			state[name] = 2
			if requested {
				notes = append(notes, fmt.Sprintf("module %s does not exist in this kernel", name))
				return nil
			}
			return fmt.Errorf("module dependency %s not found", name)
		}
		state[name] = 1
		plain := rel
		if ext := filepath.Ext(rel); ext != ".ko" {
			plain = strings.TrimSuffix(rel, ext)
		}
		dst := filepath.Join(outDir, plain)
		if err := decompressModule(filepath.Join(idx.modDir, rel), dst); err != nil {
			return err
		}
		info, infoErr := readModinfo(dst)
		deps, ok := idx.deps[name]
		if idx.deps == nil || !ok {
			if infoErr != nil {
				return infoErr
			}
			deps = info.depends
		}
		for _, d := range deps {
			if err := visit(normModName(d), false); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		// Soft dependencies are modules the kernel would request at init
		// time through modprobe (libcrc32c asks for "crc32c"): without them
		// loading fails with ENOENT. They are often aliases, and optional.
		for _, d := range info.softPre {
			mod, err := idx.resolveName(d)
			if err != nil {
				notes = append(notes, fmt.Sprintf("soft dependency %s of %s: %v", d, name, err))
				continue
			}
			if err := visit(mod, false); err != nil {
				notes = append(notes, fmt.Sprintf("soft dependency %s of %s: %v", d, name, err))
			}
		}
		state[name] = 2
		order = append(order, preparedModule{
			Name:      name,
			File:      dst,
			GuestPath: filepath.Join("/lib/modules", release, plain),
		})
		return nil
	}
	for _, n := range names {
		if err := visit(normModName(n), true); err != nil {
			return nil, notes, err
		}
	}
	return order, notes, nil
}

// decompressModule writes the plain ELF object of src to dst.
func decompressModule(src, dst string) error {
	b, err := moduleBytes(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// moduleBytes returns the plain ELF object of a possibly compressed module.
// xz and zstd have no decoder in Go's standard library, so the host's xz and
// zstd tools do it.
func moduleBytes(src string) ([]byte, error) {
	switch {
	case strings.HasSuffix(src, ".xz"), strings.HasSuffix(src, ".zst"):
		tool := "xz"
		if strings.HasSuffix(src, ".zst") {
			tool = "zstd"
		}
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(tool, "-dc", src)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("decompressing %s with %s: %w: %s", src, tool, err, lastLines(stderr.String(), 3))
		}
		return stdout.Bytes(), nil
	case strings.HasSuffix(src, ".gz"):
		in, err := os.Open(src)
		if err != nil {
			return nil, err
		}
		defer in.Close()
		zr, err := gzip.NewReader(in)
		if err != nil {
			return nil, fmt.Errorf("decompressing %s: %w", src, err)
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			return nil, fmt.Errorf("decompressing %s: %w", src, err)
		}
		return b, nil
	default:
		return os.ReadFile(src)
	}
}

// modinfo holds the .modinfo entries vmtest uses.
type modinfo struct {
	depends []string // hard dependencies, as modpost derived them from symbols
	softPre []string // "softdep=pre:" modules or aliases
	aliases []string
}

// readModinfo parses the NUL-separated key=value strings of a module's
// .modinfo section.
func readModinfo(ko string) (*modinfo, error) {
	f, err := elf.Open(ko)
	if err != nil {
		return &modinfo{}, fmt.Errorf("reading module %s: %w", ko, err)
	}
	defer f.Close()
	return parseModinfo(f, ko)
}

func parseModinfo(f *elf.File, name string) (*modinfo, error) {
	info := &modinfo{}
	sec := f.Section(".modinfo")
	if sec == nil {
		return info, nil
	}
	data, err := sec.Data()
	if err != nil {
		return info, fmt.Errorf("reading .modinfo of %s: %w", name, err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		key, value, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch key {
		case "depends":
			for _, d := range strings.Split(value, ",") {
				if d = strings.TrimSpace(d); d != "" {
					info.depends = append(info.depends, d)
				}
			}
		case "softdep":
			// "pre: a b post: c": only pre matters, post modules are not
			// needed for the load to succeed.
			pre := false
			for _, tok := range strings.Fields(value) {
				switch tok {
				case "pre:":
					pre = true
				case "post:":
					pre = false
				default:
					if pre {
						info.softPre = append(info.softPre, tok)
					}
				}
			}
		case "alias":
			info.aliases = append(info.aliases, value)
		}
	}
	return info, nil
}

// resolveName maps a module name or alias to a module of this kernel.
func (idx *moduleIndex) resolveName(name string) (string, error) {
	n := normModName(name)
	if _, ok := idx.files[n]; ok || idx.builtin[n] {
		return n, nil
	}
	if idx.aliases == nil {
		if err := idx.loadAliases(); err != nil {
			return "", err
		}
	}
	var candidates []string
	for pattern, mods := range idx.aliases {
		if ok, _ := path.Match(pattern, name); ok {
			candidates = append(candidates, mods...)
		}
	}
	if len(candidates) == 0 {
		return "", fmt.Errorf("no module provides %q", name)
	}
	// Several modules may provide one alias (crc32c_generic and
	// crc32c_intel): like modprobe, take one, and a stable one.
	sort.Strings(candidates)
	return candidates[0], nil
}

// loadAliases reads the alias index from its cache file or builds it by
// reading every module's .modinfo, which takes a while for xz-compressed
// modules and is therefore done once per kernel.
func (idx *moduleIndex) loadAliases() error {
	if b, err := os.ReadFile(idx.aliasCache); err == nil && json.Unmarshal(b, &idx.aliases) == nil {
		return nil
	}
	aliases := map[string][]string{}
	for name, rel := range idx.files {
		f, err := openModuleELF(filepath.Join(idx.modDir, rel))
		if err != nil {
			return err
		}
		info, err := parseModinfo(f, rel)
		f.Close()
		if err != nil {
			return err
		}
		for _, a := range info.aliases {
			aliases[a] = append(aliases[a], name)
		}
	}
	idx.aliases = aliases
	if idx.aliasCache != "" {
		b, _ := json.Marshal(aliases)
		if err := os.WriteFile(idx.aliasCache, b, 0o644); err != nil {
			return fmt.Errorf("saving module alias index: %w", err)
		}
	}
	return nil
}

// openModuleELF opens a possibly compressed module.
func openModuleELF(p string) (*elf.File, error) {
	b, err := moduleBytes(p)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("reading module %s: %w", p, err)
	}
	return f, nil
}
