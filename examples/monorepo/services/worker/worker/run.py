"""Drains the job queue every few seconds."""

import time

from common.money import format_cents

if __name__ == "__main__":
    while True:
        print("worker alive", format_cents(0), flush=True)
        time.sleep(5)
