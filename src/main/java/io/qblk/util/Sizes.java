package io.qblk.util;

import java.math.BigDecimal;
import java.math.MathContext;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The one size grammar of qblk (CLI arguments, qemu-io style offsets, service configuration and REST
 * bodies) and qemu-style printing.
 *
 * <pre>
 *   size   = number [unit]                       no spaces, case-insensitive
 *   number = digits | digits "." digits          a fraction must come to whole bytes: 1.5k, not 0.1k
 *          | "0x" hexdigits                      hex takes no unit
 *   unit   = "b"                                 bytes
 *          | ("k"|"m"|"g"|"t"|"p"|"e") ["ib"]    powers of 1024: 8G = 8g = 8GiB
 * </pre>
 *
 * Refused: "8GB"/"8KB" (decimal or binary? qemu reads them as binary, other tools do not), "8 G",
 * negative numbers, more than 2^63-1 bytes.
 */
public final class Sizes {
    private Sizes() {}

    private static final Pattern GRAMMAR =
            Pattern.compile("(?i)(?:0x(?<hex>[0-9a-f]+)|(?<dec>[0-9]+(?:\\.[0-9]+)?)(?<unit>b|[kmgtpe](?:ib)?)?)");
    private static final String UNITS = "kmgtpe";

    /** Parses a size or offset; throws {@link IllegalArgumentException} with a message naming the bad text. */
    public static long parse(String text) {
        if (text == null || text.isBlank()) throw new IllegalArgumentException("empty size");
        Matcher m = GRAMMAR.matcher(text);
        if (!m.matches()) throw new IllegalArgumentException("'" + text + "' is not a size (e.g. 4096, 512M, 8G, 8GiB, 1.5G, 0x1000)");
        try {
            if (m.group("hex") != null) return Long.parseLong(m.group("hex"), 16);
            String unit = m.group("unit");
            int shift = unit == null || unit.equalsIgnoreCase("b") ? 0 : 10 * (UNITS.indexOf(Character.toLowerCase(unit.charAt(0))) + 1);
            BigDecimal bytes = new BigDecimal(m.group("dec")).multiply(BigDecimal.TWO.pow(shift));
            if (bytes.stripTrailingZeros().scale() > 0) throw new IllegalArgumentException("'" + text + "' is not a whole number of bytes");
            if (bytes.compareTo(BigDecimal.valueOf(Long.MAX_VALUE)) > 0) throw new IllegalArgumentException("'" + text + "' is too large");
            return bytes.longValueExact();
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("'" + text + "' is too large");
        }
    }

    /** Exact, in the largest binary unit that divides it: "8 GiB", "1536 KiB", "1000 B" (for tables). */
    public static String exact(long bytes) {
        String[] units = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
        int u = 0;
        long v = bytes;
        while (u < units.length - 1 && v >= 1024 && v % 1024 == 0) { v /= 1024; u++; }
        return v + " " + units[u];
    }

    /** qemu's size_to_str: three significant digits and a binary unit, e.g. "64 MiB", "1.5 GiB", "512 B". */
    public static String human(long bytes) {
        String[] suffix = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
        int i = 0;
        double scaled = bytes / (1000.0 / 1024.0);
        while (i < suffix.length - 1 && scaled >= 1024.0) { scaled /= 1024.0; i++; }
        double v = (double) bytes / (1L << (10 * i));
        String num = new BigDecimal(v).round(new MathContext(3)).stripTrailingZeros().toPlainString();
        return num + " " + suffix[i] + "B";
    }

    /** qemu-io's cvtstr: "64 KiB", "1.500 MiB", "512 bytes". */
    public static String ioHuman(double bytes) {
        String[] units = {"EiB", "PiB", "TiB", "GiB", "MiB", "KiB"};
        for (int i = 0; i < units.length; i++) {
            double unit = Math.pow(1024, 6 - i);
            if (bytes >= unit) return trimZeros(String.format("%.3f", bytes / unit)) + " " + units[i];
        }
        return trimZeros(String.format("%.3f", bytes)) + " bytes";
    }

    private static String trimZeros(String s) {
        return s.endsWith(".000") ? s.substring(0, s.length() - 4) : s;
    }
}
