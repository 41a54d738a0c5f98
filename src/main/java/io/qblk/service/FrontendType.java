package io.qblk.service;

import com.fasterxml.jackson.annotation.JsonCreator;
import com.fasterxml.jackson.annotation.JsonValue;
import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;

/** How a device is presented to the host: a ublk block device or an NBD export. */
public enum FrontendType {
    UBLK, NBD;

    @JsonValue
    public String id() { return name().toLowerCase(Locale.ROOT); }

    @JsonCreator
    public static FrontendType parse(String s) {
        for (FrontendType t : values()) if (t.id().equalsIgnoreCase(s)) return t;
        throw new IllegalArgumentException("unknown frontend '" + s + "' (expected one of " + choices() + ")");
    }

    public static String choices() {
        return Arrays.stream(values()).map(FrontendType::id).collect(Collectors.joining(", "));
    }
}
