package io.qblk.service;

import java.util.Locale;

/** Parses and prints byte sizes such as {@code 512M}, {@code 8G}, {@code 8GiB} or {@code 1073741824}. */
public final class Sizes {
    public static final String REGEX = "(?i)[0-9]+\\s*([kmgtp](i?b)?|b)?";

    private Sizes() {}

    public static long parse(String s) {
        String t = s.trim().toUpperCase(Locale.ROOT);
        if (!t.matches(REGEX)) throw new IllegalArgumentException("'" + s + "' is not a size (e.g. 512M, 8G, 1073741824)");
        int i = 0;
        while (i < t.length() && Character.isDigit(t.charAt(i))) i++;
        long n;
        try {
            n = Long.parseLong(t.substring(0, i));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("'" + s + "' is too large");
        }
        String unit = t.substring(i).trim();
        int shift = unit.isEmpty() || unit.equals("B") ? 0 : switch (unit.charAt(0)) {
            case 'K' -> 10; case 'M' -> 20; case 'G' -> 30; case 'T' -> 40; case 'P' -> 50;
            default -> throw new IllegalArgumentException("'" + s + "': unknown unit");
        };
        if (shift > 0 && n > (Long.MAX_VALUE >> shift)) throw new IllegalArgumentException("'" + s + "' is too large");
        return n << shift;
    }

    public static String format(long bytes) {
        String[] units = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
        int u = 0;
        long v = bytes;
        while (u < units.length - 1 && v >= 1024 && v % 1024 == 0) { v /= 1024; u++; }
        return v + " " + units[u];
    }
}
