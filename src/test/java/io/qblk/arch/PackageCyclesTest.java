package io.qblk.arch;

import static org.junit.jupiter.api.Assertions.*;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * No cycles between the packages of src/main: every reference to another io.qblk package (import
 * or fully qualified name) is an edge, and the graph must be acyclic, so the layering
 * util/io → uring → qcow2 → target → ublk/nbd → service/cli holds.
 */
class PackageCyclesTest {
    private static final Path MAIN = Path.of("src/main/java");
    private static final Pattern REF = Pattern.compile("\\bio\\.qblk\\.([a-z0-9_]+)\\.[A-Z*]");

    static Map<String, Set<String>> graph() throws IOException {
        Map<String, Set<String>> g = new TreeMap<>();
        try (Stream<Path> files = Files.walk(MAIN.resolve("io/qblk"))) {
            for (Path f : files.filter(p -> p.toString().endsWith(".java")).toList()) {
                String pkg = MAIN.resolve("io/qblk").relativize(f.getParent()).toString().replace('/', '.');
                Set<String> out = g.computeIfAbsent(pkg, k -> new TreeSet<>());
                String src = stripComments(Files.readString(f));
                Matcher m = REF.matcher(src);
                while (m.find()) if (!m.group(1).equals(pkg)) out.add(m.group(1));
            }
        }
        return g;
    }

    /** Comments may name other packages ({@link}s to where a concept lives); only code counts. */
    static String stripComments(String s) {
        return s.replaceAll("(?s)/\\*.*?\\*/", "").replaceAll("//[^\\n]*", "");
    }

    /** Strongly connected components with more than one package (Tarjan). */
    static List<Set<String>> cycles(Map<String, Set<String>> g) {
        Map<String, Integer> index = new TreeMap<>(), low = new TreeMap<>();
        Deque<String> stack = new ArrayDeque<>();
        Set<String> on = new TreeSet<>();
        List<Set<String>> out = new ArrayList<>();
        int[] counter = {0};
        for (String v : g.keySet()) if (!index.containsKey(v)) strong(v, g, index, low, stack, on, out, counter);
        return out;
    }

    private static void strong(String v, Map<String, Set<String>> g, Map<String, Integer> index, Map<String, Integer> low,
                               Deque<String> stack, Set<String> on, List<Set<String>> out, int[] counter) {
        index.put(v, counter[0]);
        low.put(v, counter[0]++);
        stack.push(v);
        on.add(v);
        for (String w : g.getOrDefault(v, Set.of())) {
            if (!index.containsKey(w)) {
                strong(w, g, index, low, stack, on, out, counter);
                low.put(v, Math.min(low.get(v), low.get(w)));
            } else if (on.contains(w)) {
                low.put(v, Math.min(low.get(v), index.get(w)));
            }
        }
        if (low.get(v).equals(index.get(v))) {
            Set<String> c = new TreeSet<>();
            String w;
            do {
                w = stack.pop();
                on.remove(w);
                c.add(w);
            } while (!w.equals(v));
            if (c.size() > 1) out.add(c);
        }
    }

    @Test
    void mainPackagesFormNoCycle() throws IOException {
        Map<String, Set<String>> g = graph();
        assertTrue(g.containsKey("qcow2") && g.containsKey("io"), "scanned the sources: " + g.keySet());
        assertEquals(List.of(), cycles(g), "package cycles (edges: " + g + ")");
    }

    @Test
    void theLowerLayersDoNotReachUp() throws IOException {
        Map<String, Set<String>> g = graph();
        assertEquals(Set.of(), g.getOrDefault("util", Set.of()), "util imports nothing of qblk");
        assertFalse(g.get("io").contains("uring"), "io (syscalls) must not import uring: " + g.get("io"));
        for (String low : List.of("io", "uring", "qcow2", "target", "ublk", "nbd"))
            for (String high : List.of("cli", "service"))
                assertFalse(g.get(low).contains(high), low + " imports " + high + ": " + g.get(low));
    }

    @Test
    void theCycleFinderFindsACycle() {
        Map<String, Set<String>> g = new TreeMap<>(Map.of("a", Set.of("b"), "b", Set.of("c"), "c", Set.of("a"), "d", Set.of("a")));
        assertEquals(List.of(Set.of("a", "b", "c")), cycles(g));
    }
}
