package io.qblk.cli;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Writes JSON objects laid out the way qemu-img prints them (four-space indent, {@code "key": value}),
 * so scripts written against qemu-img's output read qblk's unchanged. Values: String, Number,
 * Boolean, or a nested {@link Map}.
 */
public final class QemuJson {
    private QemuJson() {}

    public static Map<String, Object> object() {
        return new LinkedHashMap<>();
    }

    public static String pretty(Map<String, ?> obj) {
        StringBuilder sb = new StringBuilder();
        write(sb, obj, 0);
        return sb.toString();
    }

    private static void write(StringBuilder sb, Map<String, ?> obj, int depth) {
        sb.append("{\n");
        int i = 0;
        for (Map.Entry<String, ?> e : obj.entrySet()) {
            sb.append("    ".repeat(depth + 1)).append(quote(e.getKey())).append(": ");
            value(sb, e.getValue(), depth + 1);
            if (++i < obj.size()) sb.append(',');
            sb.append('\n');
        }
        sb.append("    ".repeat(depth)).append('}');
    }

    @SuppressWarnings("unchecked")
    private static void value(StringBuilder sb, Object v, int depth) {
        if (v instanceof Map<?, ?> m) write(sb, (Map<String, ?>) m, depth);
        else if (v instanceof String s) sb.append(quote(s));
        else sb.append(v);
    }

    public static String quote(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                case '\n' -> sb.append("\\n");
                case '\t' -> sb.append("\\t");
                case '\r' -> sb.append("\\r");
                default -> {
                    if (c < 0x20) sb.append(String.format("\\u%04x", (int) c));
                    else sb.append(c);
                }
            }
        }
        return sb.append('"').toString();
    }
}
