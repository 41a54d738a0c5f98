package io.qblk.cli;

import java.math.BigDecimal;
import java.math.MathContext;

/** Parses sizes and offsets the way qemu-img/qemu-io accept them and prints them the way they do. */
public final class Sizes {
    private Sizes() {}

    private static final String UNITS = "kmgtpe";

    /**
     * Parses a byte count: decimal or 0x-hex, optionally followed by one suffix of
     * b (bytes), k/K, M, G, T, P, E (powers of 1024). Throws {@link IllegalArgumentException} with
     * a message naming the bad text.
     */
    public static long parse(String text) {
        if (text == null || text.isBlank()) throw new IllegalArgumentException("empty size");
        String s = text.trim();
        long mult = 1;
        char last = Character.toLowerCase(s.charAt(s.length() - 1));
        boolean hex = s.startsWith("0x") || s.startsWith("0X");
        if (!hex || last == 'k' || last == 'm' || last == 'g' || last == 't' || last == 'p') {
            int u = UNITS.indexOf(last);
            if (u >= 0) {
                mult = 1L << (10 * (u + 1));
                s = s.substring(0, s.length() - 1);
            } else if (last == 'b' && !hex) {
                s = s.substring(0, s.length() - 1);
            }
        }
        try {
            long v;
            if (s.startsWith("0x") || s.startsWith("0X")) v = Long.parseLong(s.substring(2), 16);
            else if (s.contains(".")) {
                BigDecimal d = new BigDecimal(s).multiply(BigDecimal.valueOf(mult));
                if (d.signum() < 0) throw new NumberFormatException();
                return d.longValueExact();
            } else v = Long.parseLong(s);
            if (v < 0) throw new NumberFormatException();
            return Math.multiplyExact(v, mult);
        } catch (NumberFormatException | ArithmeticException e) {
            throw new IllegalArgumentException("invalid size '" + text + "'");
        }
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
