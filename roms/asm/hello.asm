; hello: the smallest useful guest. Prints a greeting on COM1 and the debug console, exits 0.
; Ferrite boots it when no --bios is given (until the project's own BIOS replaces it).

%include "inc/ferrite.inc"

entry:
    INIT
    PRINT `Hello from Ferrite! This is the hello ROM, running in real mode.\r\n`
    EXIT 0

    ROM_END
